"""The documentation site: a strict MkDocs build, and its index page opened in real headless Chromium.

The build needs the ``docs`` extra (mkdocs, mkdocs-material, mkdocstrings); the browser part needs
Debian's ``chromium`` and the ``playwright`` package, as the serve page's browser test does
(``tests/serve/test_browser.py``). Without them the tests skip, unless ``HAMNER_REQUIRE_BROWSER=1``
(set by CI), where they fail instead. The screenshot goes to ``$HAMNER_ARTIFACTS`` (default
``artifacts/``).
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hamner.config_reference import SECTIONS

REPO = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("HAMNER_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("HAMNER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def need(what: list[tuple[str, bool]]) -> None:
    missing = [name for name, ok in what if not ok]
    if missing:
        if REQUIRED:
            raise RuntimeError(f"HAMNER_REQUIRE_BROWSER=1 but missing: {', '.join(missing)}")
        pytest.skip(f"needs {', '.join(missing)}")


FIGURES = ("f1_vs_published", "ablations", "training_curves", "relevance", "case_studies")


def test_the_speed_tables_are_the_ones_the_results_files_give() -> None:
    """The speed page's tables are made from the results files (``inference_speed.py --table
    --write`` and ``--unseen-table --write``): they may not drift from them."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from inference_speed import TABLE_SOURCES, table, unseen_table

    text = (REPO / "docs/speed.md").read_text()
    block = text.split("<!-- speed:start -->", 1)[1].split("<!-- speed:end -->", 1)[0]
    assert block.strip() == table([str(REPO / p) for p in TABLE_SOURCES if (REPO / p).exists()]).strip()
    block = text.split("<!-- unseen:start -->", 1)[1].split("<!-- unseen:end -->", 1)[0]
    assert block.strip() == unseen_table([str(REPO / "results/bench_unseen.csv")]).strip()


def test_every_markdown_table_has_its_header_row() -> None:
    """A table row after a blank line starts a new table with no header, which Markdown renders as a
    paragraph of pipes (it happened to the levers table of docs/results.md)."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "results").rglob("*.md"))]
    broken = []
    for page in pages:
        lines = page.read_text().splitlines()
        fenced = False
        for i, line in enumerate(lines):
            if line.lstrip().startswith("```"):
                fenced = not fenced
            starts_table = line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|"))
            if not fenced and starts_table:
                separator = lines[i + 1].replace(" ", "") if i + 1 < len(lines) else ""
                if not separator.startswith(("|---", "|:-")):
                    broken.append(f"{page.relative_to(REPO)}:{i + 1}: {line[:60]}")
    assert not broken, "table rows without a header row:\n" + "\n".join(broken)


def test_the_docs_site_inserts_the_reference_into_the_training_page() -> None:
    assert "<!-- config-reference -->" in (REPO / "docs" / "training.md").read_text()
    mk = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert "scripts/mkdocs_hooks.py" in mk["hooks"] and mk["strict"] is True


@pytest.mark.parametrize("name", FIGURES)
def test_the_docs_show_each_committed_figure(name: str) -> None:
    assert (REPO / "docs" / "figures" / f"{name}.svg").exists(), "run bash scripts/build_docs.sh (it draws the figures, the case studies from the data)"
    shown = "".join(p.read_text() for p in (REPO / "docs").rglob("*.md"))
    assert f"figures/{name}.svg" in shown


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need(
        [(m, importlib.util.find_spec(m.replace("-", "_")) is not None) for m in ("mkdocs", "material", "mkdocstrings")]
    )
    out = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_the_strict_build_has_every_page_and_every_config_key(site: Path) -> None:
    for page in (
        "index.html",
        "method/index.html",
        "training/index.html",
        "results/index.html",
        "bulk/index.html",
        "export/index.html",
        "reference/inference/index.html",
        "figures/case_studies.svg",
        "img/method.svg",
    ):
        assert (site / page).exists(), page
    training = (site / "training" / "index.html").read_text()
    for section, cls, _ in SECTIONS:
        for f in dataclasses.fields(cls):
            assert f"<code>{section}.{f.name}</code>" in training, (
                f"{section}.{f.name} missing from the config reference"
            )
    assert "def from_pretrained" not in (site / "reference" / "inference" / "index.html").read_text()  # no source dumps
    assert "from_pretrained" in (site / "reference" / "inference" / "index.html").read_text()


@pytest.mark.slow
def test_the_index_page_opens_in_headless_chromium(served: str) -> None:
    need(
        [
            ("Debian's chromium", CHROMIUM is not None),
            ("the playwright package", importlib.util.find_spec("playwright") is not None),
        ]
    )
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # a loaded 2-core machine: wait for the page, not for a clock

    out_dir = Path(os.environ.get("HAMNER_ARTIFACTS", REPO / "artifacts"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        external: list[str] = []
        page.on(
            "request", lambda req: None if req.url.startswith((served, "data:", "blob:")) else external.append(req.url)
        )
        failed: list[str] = []
        page.on(
            "requestfailed",
            lambda req: None if req.failure == "net::ERR_ABORTED" else failed.append(f"{req.url} {req.failure}"),
        )  # leaving a page aborts its pending loads
        page.goto(served + "/")
        expect(page).to_have_title("hamner")
        expect(page.get_by_role("heading", level=1).first).to_contain_text("hamner")
        picture = page.locator("article img").first
        expect(picture).to_be_visible()
        assert page.evaluate("img => img.complete && img.naturalWidth > 0", picture.element_handle())
        expect(page.locator("article table").first).to_contain_text("hamlearning")
        page.screenshot(path=str(out_dir / "docs-index.png"), full_page=True)
        # the navigation works: the method page and its diagram, the training page and its generated keys
        page.get_by_role("link", name="The method").first.click()
        expect(page.locator("h1").first).to_contain_text("what is the paper's and what is ours")
        diagram = page.locator("article img[src$='method.svg']")
        assert page.evaluate("img => img.complete && img.naturalWidth > 0", diagram.element_handle())
        page.goto(served + "/training/")
        expect(page.locator("article")).to_contain_text("train.visual_dropout")
        browser.close()
    assert not external, f"the site made external requests: {external}"
    assert not failed, f"requests failed: {failed}"
    assert (out_dir / "docs-index.png").stat().st_size > 10_000
