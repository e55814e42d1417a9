# Sourced by the findings' publish scripts (v3/publish.sh, v3/supplement/publish.sh): the cnnlab
# command to run, a check that the storages exist, and `timed`, which prints each command and
# its wall time as the findings pages quote them. Run the scripts from the repository root.

if [[ -z "${CNNLAB:-}" ]]; then  # the project's own environment (make venv), else the PATH's
  if [[ -x .venv/bin/cnnlab ]]; then CNNLAB=.venv/bin/cnnlab; else CNNLAB=cnnlab; fi
fi
if ! command -v "$CNNLAB" >/dev/null; then
  echo "publish.sh: error: no cnnlab command (run 'make venv', or set CNNLAB)" >&2
  exit 2
fi

need_files() {  # one line and exit 2 for the first that is missing
  local f
  for f in "$@"; do
    if [[ ! -f "$f" ]]; then
      echo "publish.sh: error: $f not found (run from the repository root)" >&2
      exit 2
    fi
  done
}

timed() {  # the command, then its wall time
  local start=$SECONDS
  echo "+ $*"
  "$@"
  echo "  ($((SECONDS - start)) s)"
}
