#!/usr/bin/env bash
# Install what is missing, then run the linters and the whole test suite, including the tests marked
# `weights` (the packaged MiniLM and image models) and `slow` (torchrun, the served process under load,
# the page in headless Chromium: that one skips without Debian's chromium, see
# scripts/install_browser.sh, unless HAMNER_REQUIRE_BROWSER=1). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HAMNER_DATA_ROOT=${HAMNER_DATA_ROOT:-$(cd .. && pwd)/shared/data}
.venv/bin/ruff check --no-cache src tests scripts benchmarks  # no cache: a stale one misjudges moved modules
.venv/bin/mypy
NO_MKDOCS_2_WARNING=1 bash scripts/build_docs.sh   # the docs site, strictly: a broken link or a missing page fails
.venv/bin/python -m pytest "$@"
