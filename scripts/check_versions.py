"""Check that the installed packages are the versions constraints.txt pins (the measured set).

Run by scripts/install.sh after installing; exits 1 naming each package that differs. A local
version label (torch's "+cpu") is ignored: 2.13.0+cpu is the pinned 2.13.0.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

from packaging.version import Version


def pinned(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            if not version:
                raise SystemExit(f"{path}: {raw!r} is not an exact pin (name==version)")
            out[name.strip()] = version.strip()
    return out


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "constraints.txt"
    wrong = []
    for name, want in pinned(path).items():
        try:
            found = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a pin for an extra that is not installed here
        if Version(found).public != Version(want).public:
            wrong.append(f"{name} {found} (constraints.txt: {want})")
    if wrong:
        print("installed versions differ from the measured set: " + "; ".join(wrong), file=sys.stderr)
        return 1
    print(f"installed versions match {path.name} ({len(pinned(path))} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
