#!/usr/bin/env bash
# Label Studio in its own virtual environment (its Django, pandas and numpy pins are not ours), for the
# Label Studio round-trip test (tests/data/test_labelstudio_roundtrip.py) and for labelling by hand:
#   $LS_VENV/bin/label-studio start --host 127.0.0.1 -p 8080 --data-dir ./ls-data
# The venv goes to $LS_VENV (default ./.venv-labelstudio, git-ignored); the test finds it there or
# through HAMNER_LABELSTUDIO_VENV. Versions: constraints-labelstudio.txt. Idempotent: a second run
# only checks. About 1 GB on disk and 2 minutes with a warm network; Python 3.11 (PYTHON= to choose).
set -euo pipefail
cd "$(dirname "$0")/.."
LS_VENV=${LS_VENV:-${HAMNER_LABELSTUDIO_VENV:-.venv-labelstudio}}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || { echo "install_label_studio.sh: $PY not found (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
if [ ! -x "$LS_VENV/bin/python" ]; then
  "$PY" -m venv "$LS_VENV"
fi
# pip's cache would keep a second copy of every wheel (about 1 GB here)
"$LS_VENV/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q \
  -c constraints-labelstudio.txt label-studio==1.23.2 'sentry-sdk<3'
"$LS_VENV/bin/python" -c "import importlib.metadata as m; print('label-studio', m.version('label-studio'), '| sentry-sdk', m.version('sentry-sdk'), '| in', '$LS_VENV')"
