#!/usr/bin/env bash
# Installs what the project needs into a virtual environment, never into the system's python
# (where that is "externally managed", PEP 668, pip refuses; elsewhere 1.6 GB of torch and
# transformers do not belong there). Inside an active environment ($VIRTUAL_ENV) it installs
# there; otherwise it creates, or reuses, .venv in the repository with `python3 -m venv`, so only
# `python3` is needed. On a machine without an NVIDIA GPU it pins torch to the 2.13.0 CPU build
# first, so an unpinned torch does not pull a multi-GB CUDA build. A stamp of requirements.txt in
# the environment makes a second run install nothing. script/demo.sh and script/test.sh run it,
# then run in that environment; afterwards: source .venv/bin/activate
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${VIRTUAL_ENV:-}" ]; then
  ENV_DIR="$VIRTUAL_ENV"
  if [ ! -x "$ENV_DIR/bin/python" ]; then
    echo "error: VIRTUAL_ENV=$ENV_DIR has no bin/python; run 'deactivate' (or unset VIRTUAL_ENV) and rerun" >&2
    exit 1
  fi
else
  ENV_DIR="$PWD/.venv"
  if [ ! -x "$ENV_DIR/bin/python" ]; then
    if ! command -v python3 >/dev/null 2>&1; then
      echo "error: python3 not found; install Python 3 (3.10 or newer) and rerun" >&2
      exit 1
    fi
    echo "setup: creating the virtual environment .venv (python3 -m venv)" >&2
    if ! python3 -m venv "$ENV_DIR"; then
      rm -rf "$ENV_DIR"  # a half-made environment would be reused next time
      echo "error: python3 -m venv failed; install the venv module (Debian/Ubuntu: apt-get install python3-venv) and rerun" >&2
      exit 1
    fi
  fi
fi
PY="$ENV_DIR/bin/python"

# what was installed last time: requirements.txt and the kind of torch asked for
KIND=cpu
if command -v nvidia-smi >/dev/null 2>&1; then KIND=cuda; fi
STAMP="$ENV_DIR/.krony-pt-requirements"
WANT="$(cksum < requirements.txt) $KIND"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "setup: requirements already installed in $ENV_DIR" >&2
  exit 0
fi

echo "setup: installing the requirements into $ENV_DIR (the first time: about 1.6 GB, a few minutes)" >&2
PIP="$PY -m pip install --disable-pip-version-check -q"
if ! "$PY" -c "import torch" 2>/dev/null; then
  if [ "$KIND" = cuda ]; then
    $PIP torch
  else
    $PIP torch==2.13.0 || $PIP torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
$PIP -r requirements.txt
echo "$WANT" > "$STAMP"
