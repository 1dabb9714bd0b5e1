#!/usr/bin/env bash
# The README's main job on a fresh machine: install the requirements, then run the whole pipeline
# (teacher -> Kronecker decomposition -> student -> HF export -> perplexities). Arguments go to
# script/demo.py (e.g. --out_dir DIR, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash script/setup.sh
python script/demo.py "$@"
