#!/usr/bin/env bash
# Train configs x datasets x seeds, PARALLEL runs at a time (each with THREADS torch threads);
# rerunning resumes unfinished runs and skips finished ones. Longest jobs (Twitter-2015) go first.
# Usage: scripts/run_seeds.sh CONFIG [CONFIG...]   env: SEEDS="1 2 3" DATASETS="twitter2015 twitter2017"
#        PARALLEL=2 THREADS=1 OUT=runs HAMNER_DATA_ROOT=../shared/data; extra --set via EXTRA="k=v ..."
#        or JOBS=FILE scripts/run_seeds.sh: one "CONFIG DATASET SEED" per line, run in that order
set -euo pipefail
SEEDS=${SEEDS:-"1 2 3"}
DATASETS=${DATASETS:-"twitter2015 twitter2017"}
PARALLEL=${PARALLEL:-2}
THREADS=${THREADS:-1}
OUT=${OUT:-runs}
mkdir -p "$OUT/logs"
jobs=()
if [[ -n "${JOBS:-}" ]]; then
  mapfile -t jobs < <(grep -v -e '^#' -e '^[[:space:]]*$' "$JOBS")
else
  for config in "$@"; do
    for dataset in $DATASETS; do
      for seed in $SEEDS; do jobs+=("$config $dataset $seed"); done
    done
  done
fi
(( ${#jobs[@]} )) || { echo "no jobs: name configs, or JOBS=FILE" >&2; exit 2; }
printf '%s\n' "${jobs[@]}" | xargs -P "$PARALLEL" -L 1 bash -c '
  config=$0; dataset=$1; seed=$2; name=$(basename "$config" .yaml)
  extra=(); for kv in ${EXTRA:-}; do extra+=(--set "$kv"); done
  OMP_NUM_THREADS='"$THREADS"' hamner train --config "$config" --resume \
    --set data.dataset="$dataset" --set train.seed="$seed" --set train.num_threads='"$THREADS"' \
    --set train.output_dir='"$OUT"' --set train.progress=false "${extra[@]}" \
    > '"$OUT"'/logs/"$dataset-$name-seed$seed".log 2>&1 \
    && echo "done: $dataset $name seed $seed" || echo "FAILED: $dataset $name seed $seed (see '"$OUT"'/logs)"
'
