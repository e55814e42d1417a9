#!/usr/bin/env bash
# The runs behind docs/results/transfer.md ("Over seeds"): five strategies x three seeds on the
# paediatric chest X-rays, then the comparison tables. Every setting below was fixed before any
# of these runs, from docs/transfer.md's starting points; nothing is tuned on validation or on
# the test folder. Runs that already finished are kept, so the script resumes after an
# interruption (a run cut short leaves no directory: run directories are written atomically).
#
#   bash docs/results/chest-xray-seeds.sh [DATA] [RUNS]
#
# DATA defaults to ../shared/data/chest-xray-pneumonia, RUNS to runs/chest-xray-seeds.
set -euo pipefail

DATA=${1:-../shared/data/chest-xray-pneumonia}
RUNS=${2:-runs/chest-xray-seeds}
SEEDS=${SEEDS:-"0 1 2"}
if [[ -z "${CNNLAB:-}" ]]; then  # the project's own environment (make venv), else the PATH's
  if [[ -x .venv/bin/cnnlab ]]; then CNNLAB=.venv/bin/cnnlab; else CNNLAB=cnnlab; fi
fi
if ! command -v "$CNNLAB" >/dev/null; then
  echo "chest-xray-seeds.sh: error: no cnnlab command (run 'make venv', or set CNNLAB)" >&2
  exit 2
fi
if [[ ! -d "$DATA/train" || ! -d "$DATA/test" ]]; then
  echo "chest-xray-seeds.sh: error: $DATA has no train/ and test/ folders (give DATA)" >&2
  exit 2
fi
mkdir -p "$RUNS"

# Shared by every strategy: the offline ImageNet weights, patients kept in one split, one
# validation split for every seed (--split-seed 0: the seeds vary initialisation, shuffling and
# augmentation, and a strategy's seeds can be ensembled with a threshold chosen on that shared
# validation split), duplicates across splits removed, class-weighted loss, the radiograph
# augmentation, the best epoch by validation loss, a temperature and the operating threshold
# (Youden) fitted on validation.
COMMON=(--arch efficientnet_lite0 --split-seed 0 --balance weights --dedupe --calibrate
        --group-regex '^(person\d+|IM-\d+|NORMAL2-IM-\d+)' --augment radiograph
        --monitor loss --threshold-policy youden --quiet)
# The fine-tuning settings that LP-FT, full and random init share (Kumar et al. 2022's FT arm).
FINETUNE=(--optimizer adamw --weight-decay 0.05 --schedule cosine --warmup 0.1
          --label-smoothing 0.1 --ema 0.998)

declare -A RECIPE=(
  [head]="--strategy head --epochs 15 --lr 3e-3 --feature-views 4"
  [partial]="--strategy partial --epochs 8 --lr 1e-3 --schedule cosine --warmup 0.1"
  [lpft]="--strategy lp-ft --epochs 6 --probe-epochs 2 --lr 1e-3 --backbone-lr-factor 0.1"
  [full]="--strategy full --epochs 6 --lr 3e-4"
  [random]="--strategy full --epochs 6 --lr 1e-3 --weights none"
)
FINETUNED="lpft full random"

for seed in $SEEDS; do
  for name in head partial lpft full random; do
    out="$RUNS/$name-s$seed"
    if [[ -f "$out/metrics.json" ]]; then echo "kept $out"; continue; fi
    extra=()
    [[ " $FINETUNED " == *" $name "* ]] && extra=("${FINETUNE[@]}")
    timer=()  # wall time and peak RSS of the whole command, where GNU time is installed
    [[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f "$out: wall %e s, peak RSS %M kB")
    # shellcheck disable=SC2086  # the recipe is a list of flags
    "${timer[@]}" "$CNNLAB" transfer train "$DATA" --out "$out" --seed "$seed" \
      "${COMMON[@]}" ${RECIPE[$name]} "${extra[@]}" 2>&1 | tee -a "$RUNS/times.log"
  done
done

# One table per operating point, the mean over seeds with its 95% t-interval beside the runs'
# own bootstrap intervals; then each strategy's three seeds averaged as one ensemble. The
# ensemble the results page reports as cnnlab's was fixed before any run: LP-FT's seeds (the
# strategy built for a site shift). The other four are printed beside it, never chosen from
# the test folder.
"$CNNLAB" transfer compare --by-seed "$RUNS"/{head,partial,lpft,full,random}-s* \
  --out "$RUNS/seeds.md" --overwrite
# Pretraining alone: the same fine-tuning from ImageNet weights against random weights.
"$CNNLAB" transfer compare --by-seed "$RUNS"/random-s* "$RUNS"/full-s* \
  --out "$RUNS/pretraining.md" --overwrite
for name in head partial lpft full random; do
  runs=("$RUNS/$name"-s*)  # an ensemble needs two runs or more (SEEDS="0" trains one)
  if [[ ${#runs[@]} -lt 2 ]]; then echo "ensemble-$name: skipped, fewer than 2 runs"; continue; fi
  "$CNNLAB" transfer compare "${runs[@]}" --ensemble --out "$RUNS/ensemble-$name.md" --overwrite
done
