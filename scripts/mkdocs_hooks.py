"""MkDocs hooks (mkdocs.yml ``hooks:``): generated content that must not go stale.

- ``training.md`` holds the marker ``<!-- config-reference -->``; it is replaced at build time by the
  table of every config key, made from the typed dataclass configs (:mod:`hamner.config_reference`).
- ``results.md`` holds the results and comparison tables between the markers that
  ``scripts/summarize_results.py`` rewrites from the results files, and the levers' seed table that
  ``scripts/lever_seeds.py --docs`` rewrites; the build checks the markers are there.

A page that lost a marker fails the build, so generated content cannot silently disappear.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG_MARKER = "<!-- config-reference -->"
TABLES = ("results", "comparison", "lever-seeds")


def marked(text: str, name: str, where: str) -> re.Match[str]:
    m = re.search(rf"<!-- {name}:start -->\n.*?<!-- {name}:end -->", text, re.S)
    if m is None:
        raise RuntimeError(f"{where} must hold the <!-- {name}:start --> ... <!-- {name}:end --> markers")
    return m


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri == "training.md":
        if CONFIG_MARKER not in markdown:
            raise RuntimeError(f"docs/training.md must hold {CONFIG_MARKER}: the generated config reference goes there")
        if str(REPO / "src") not in sys.path:
            sys.path.insert(0, str(REPO / "src"))  # the sources being documented, installed or not
        from hamner.config_reference import config_reference_markdown

        return markdown.replace(CONFIG_MARKER, config_reference_markdown(REPO / "configs"))
    if page.file.src_uri == "results.md":
        for name in TABLES:
            marked(markdown, name, "docs/results.md")
    return markdown
