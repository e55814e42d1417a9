#!/usr/bin/env bash
# Everything docs/findings/README.md cites for study version 3, produced by cnnlab's own
# commands from the committed storage: the standard study's report, what changed since version
# 2, and the quick profile (`make demo`'s study) as a consistency check against standard. Run
# from the repository root once `cnnlab study status` says the standard study is complete. The
# quick study resumes if interrupted; its storage is kept, so a rerun only redoes the reports.
#
#   bash docs/findings/v3/publish.sh
set -euo pipefail

# shellcheck source=../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
V2=docs/findings/v2/standard/studies.db
V3=docs/findings/v3/studies.db
QUICK=docs/findings/v3/quick/studies.db
need_files "$V2" "$V3"

timed "$CNNLAB" study report --storage "sqlite:///$V3" --out docs/findings/v3/report --overwrite
timed "$CNNLAB" study compare "sqlite:///$V2" standard "sqlite:///$V3" standard \
  --out docs/findings/v3/v2-vs-v3.md --overwrite
mkdir -p "$(dirname "$QUICK")"
timed "$CNNLAB" demo --storage "sqlite:///$QUICK" --out docs/findings/v3/quick/report --overwrite
timed "$CNNLAB" study compare "sqlite:///$QUICK" quick "sqlite:///$V3" standard \
  --out docs/findings/v3/quick-vs-standard.md --overwrite
