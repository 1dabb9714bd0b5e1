#!/usr/bin/env bash
# The test suite: installs the requirements (script/setup.sh: into the active virtual
# environment, else into .venv), then runs pytest on CPU in that environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash script/setup.sh
if [ -z "${VIRTUAL_ENV:-}" ]; then source .venv/bin/activate; fi
python -m pytest -q tests "$@"
