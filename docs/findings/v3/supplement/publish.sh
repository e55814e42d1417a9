#!/usr/bin/env bash
# Everything docs/findings/README.md cites from study v3's supplement (DESIGN.md here), made by
# cnnlab's own commands from the committed storage: the pilot's report, the supplement's
# report, and its comparison with the standard study it revisits. Run from the repository root
# once `cnnlab study status --storage sqlite:///docs/findings/v3/supplement/studies.db --name
# supplement` says it is complete; a study still running is reported as far as it has got.
#
#   bash docs/findings/v3/supplement/publish.sh
set -euo pipefail

if [[ -z "${CNNLAB:-}" ]]; then  # the project's own environment (make venv), else the PATH's
  if [[ -x .venv/bin/cnnlab ]]; then CNNLAB=.venv/bin/cnnlab; else CNNLAB=cnnlab; fi
fi
if ! command -v "$CNNLAB" >/dev/null; then
  echo "publish.sh: error: no cnnlab command (run 'make venv', or set CNNLAB)" >&2
  exit 2
fi
HERE=docs/findings/v3/supplement
V3=docs/findings/v3/studies.db
DB=$HERE/studies.db
for db in "$V3" "$DB"; do
  if [[ ! -f "$db" ]]; then
    echo "publish.sh: error: $db not found (run from the repository root)" >&2
    exit 2
  fi
done

timed() {  # the command, then its wall time, as the findings page quotes it
  local start=$SECONDS
  echo "+ $*"
  "$@"
  echo "  ($((SECONDS - start)) s)"
}

timed "$CNNLAB" study report --storage "sqlite:///$DB" --name pilot --out "$HERE/pilot" --overwrite
timed "$CNNLAB" study report --storage "sqlite:///$DB" --name supplement --out "$HERE/report" \
  --overwrite
timed "$CNNLAB" study compare "sqlite:///$V3" standard "sqlite:///$DB" supplement \
  --out "$HERE/v3-vs-supplement.md" --overwrite
