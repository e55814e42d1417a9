#!/usr/bin/env bash
# Everything docs/findings/README.md cites from study v3's supplement (DESIGN.md here), made by
# cnnlab's own commands from the committed storage: the pilot's report, the supplement's
# report, and its comparison with the standard study it revisits. Run from the repository root
# once `cnnlab study status --storage sqlite:///docs/findings/v3/supplement/studies.db --name
# supplement` says it is complete; a study still running is reported as far as it has got.
#
#   bash docs/findings/v3/supplement/publish.sh
set -euo pipefail

# shellcheck source=../../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../common.sh"
HERE=docs/findings/v3/supplement
V3=docs/findings/v3/studies.db
DB=$HERE/studies.db
need_files "$V3" "$DB"

timed "$CNNLAB" study report --storage "sqlite:///$DB" --name pilot --out "$HERE/pilot" --overwrite
timed "$CNNLAB" study report --storage "sqlite:///$DB" --name supplement --out "$HERE/report" \
  --overwrite
timed "$CNNLAB" study compare "sqlite:///$V3" standard "sqlite:///$DB" supplement \
  --out "$HERE/v3-vs-supplement.md" --overwrite
