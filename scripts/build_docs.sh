#!/usr/bin/env bash
# Build the documentation site into site/ with one command, strictly (a broken link, a page missing
# from the navigation or a bad API reference fails it). `bash scripts/build_docs.sh serve` previews it
# live instead. Uses ./.venv when it has mkdocs (scripts/install.sh installs the docs extra), else the
# mkdocs on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
MKDOCS=mkdocs
if [ -x .venv/bin/mkdocs ]; then MKDOCS=.venv/bin/mkdocs; fi
if [ "${1:-}" = "serve" ]; then
  shift
  exec "$MKDOCS" serve "$@"
fi
"$MKDOCS" build --strict --clean "$@"
echo "built: $(pwd)/site/index.html"
