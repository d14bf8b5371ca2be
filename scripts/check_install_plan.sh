#!/usr/bin/env bash
# Shows that installing hamner next to a torch that is already there keeps that torch: in ./.venv
# (which holds torch), pip plans `pip install ".[offline-models,vision,serve]"` WITHOUT the
# constraints file, and the plan must not install, upgrade or replace torch (nor pull CUDA
# libraries). CI runs it after scripts/install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp)
trap 'rm -f "$report"' EXIT
.venv/bin/python -m pip install --disable-pip-version-check -q --dry-run --report "$report" ".[offline-models,vision,serve]"
.venv/bin/python - "$report" <<'PY'
import json, sys
plan = json.load(open(sys.argv[1]))["install"]
names = sorted(f"{x['metadata']['name']}=={x['metadata']['version']}" for x in plan)
print("pip would install:", ", ".join(names) or "nothing")
bad = [n for n in names if n.lower().startswith(("torch==", "nvidia-", "triton=="))]
if bad:
    sys.exit(f"check_install_plan: installing hamner would change torch: {bad}")
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]
pins = [d for d in deps["dependencies"] + sum(deps["optional-dependencies"].values(), []) if "==" in d]
if pins:
    sys.exit(f"check_install_plan: pyproject.toml pins exact versions {pins}: name ranges there, pins in constraints.txt")
import torch
print(f"torch {torch.__version__} stays as it is; pyproject.toml names ranges only")
PY
