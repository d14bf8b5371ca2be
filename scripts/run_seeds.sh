#!/usr/bin/env bash
# Train one config on one dataset for several seeds, one after another; rerunning resumes.
# Usage: scripts/run_seeds.sh DATASET CONFIG "SEEDS" [extra hamner train args...]
#   e.g. scripts/run_seeds.sh twitter2017 configs/text-only.yaml "1 2 3" --set train.num_threads=1
set -euo pipefail
dataset=$1; config=$2; seeds=$3; shift 3
for seed in $seeds; do
  hamner train --config "$config" --resume --set data.dataset="$dataset" --set train.seed="$seed" "$@"
done
