#!/usr/bin/env bash
# The main job on a fresh machine: install, train the default text tagger on Twitter-2017 (12.4
# minutes in all on a 2-core CPU, results/quickstart.json), evaluate its dev-selected checkpoint on the test split, and tag a
# few example posts. Data root: $HAMNER_DATA_ROOT, else ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export HAMNER_DATA_ROOT=${HAMNER_DATA_ROOT:-$(cd .. && pwd)/shared/data}
OUT=${OUT:-quickstart}  # kept apart from runs/, which scripts/summarize_results.py collects
run=$OUT/twitter2017/text-only/seed1
.venv/bin/hamner train --config configs/text-only.yaml --resume --set train.output_dir="$OUT" "$@"
echo "== test split, checkpoint chosen on dev =="
.venv/bin/hamner evaluate --model "$run/best" --split test
echo "== tagging examples/posts.txt =="
.venv/bin/hamner tag --model "$run/best" examples/posts.txt
