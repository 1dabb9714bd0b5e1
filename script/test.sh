#!/usr/bin/env bash
# The test suite: installs the requirements, then runs pytest on CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash script/setup.sh
python -m pytest -q tests "$@"
