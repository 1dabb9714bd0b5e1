#!/usr/bin/env bash
# Installs what the project needs into the current Python. On a machine without an NVIDIA GPU it
# pins torch to the 2.13.0 CPU build first, so an unpinned torch does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install --disable-pip-version-check -q"
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    $PIP torch
  else
    $PIP torch==2.13.0 || $PIP torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
$PIP -r requirements.txt
