#!/usr/bin/env bash
# Install what is missing, then run the whole test suite (including the tests marked `weights`,
# which use the packaged MiniLM) and the linters. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HAMNER_DATA_ROOT=${HAMNER_DATA_ROOT:-$(cd .. && pwd)/shared/data}
.venv/bin/ruff check src tests scripts benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
