#!/usr/bin/env bash
# Build the documentation site into site/ with one command, strictly (a broken link, a page missing
# from the navigation or a bad API reference fails it). `bash scripts/build_docs.sh serve` previews it
# live instead. Uses ./.venv when it has mkdocs (scripts/install.sh installs the docs extra), else the
# mkdocs on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
MKDOCS=mkdocs
PY=python3
if [ -x .venv/bin/mkdocs ]; then MKDOCS=.venv/bin/mkdocs; PY=.venv/bin/python; fi
# the figures from the committed results, and the case studies from the data's sample images (which
# stay out of git: no licence to redistribute tweets); needs the data root (../shared/data or
# $HAMNER_DATA_ROOT), else the case-study figure is missing and the strict build says so
"$PY" scripts/make_figures.py >/dev/null
if [ "${1:-}" = "serve" ]; then
  shift
  exec "$MKDOCS" serve "$@"
fi
"$MKDOCS" build --strict --clean "$@"
echo "built: $(pwd)/site/index.html"
