#!/usr/bin/env bash
# The README's main job on a fresh machine: install the requirements (script/setup.sh: into the
# active virtual environment, else into .venv), then run the whole pipeline in that environment
# (teacher -> Kronecker decomposition -> student -> HF export -> perplexities). Arguments go to
# script/demo.py (e.g. --out_dir DIR, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash script/setup.sh
if [ -z "${VIRTUAL_ENV:-}" ]; then source .venv/bin/activate; fi
python script/demo.py "$@"
