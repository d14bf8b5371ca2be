"""The documentation site: a strict MkDocs build, and its index page opened in real headless Chromium.

The build needs the ``docs`` extra (mkdocs, mkdocs-material, mkdocstrings); the browser part needs
Debian's ``chromium`` and the ``playwright`` package, as the serve page's browser test does
(``tests/serve/test_browser.py``). Without them the tests skip, unless ``HAMNER_REQUIRE_BROWSER=1``
(set by CI), where they fail instead. The home page's screenshots, ``docs-index-1280.png`` (a
desktop window) and ``docs-index-390.png`` (a phone), go to ``$HAMNER_ARTIFACTS`` (default ``artifacts/``).
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
from typing import Any

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
    assert (REPO / "docs" / "figures" / f"{name}.svg").exists(), (
        "run bash scripts/build_docs.sh (it draws the figures, the case studies from the data)"
    )
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


# Every table, code block and picture of the page's article, measured in the browser: its box against
# the main column's (``.md-content``: on a phone Material runs code blocks and tables out to the edges
# of the screen, which is the column's edge there), and how much of its content its own box or a box
# around it hides: a box narrowed by a float beside it, or content cut without a scrollbar, shows here.
MEASURE_BLOCKS = """() => {
  const article = document.querySelector(".md-content__inner");
  const column = document.querySelector(".md-content");
  const c = column.getBoundingClientRect();
  const blocks = [...article.querySelectorAll("table, pre, pre > code, img")].map((el, i) => {
    const r = el.getBoundingClientRect();
    let left = r.left, right = r.right, hidden = 0, scrolls = true;
    for (let e = el; e && e !== column; e = e.parentElement) {
      const overflow = getComputedStyle(e).overflowX, cut = e.scrollWidth - e.clientWidth;
      if (overflow === "visible") continue;
      if (e !== el) {  // what a box around it clips is out of sight: only the rest must fit the column
        const b = e.getBoundingClientRect();
        left = Math.max(left, b.left);
        right = Math.min(right, b.right);
      }
      if (cut > 1) {
        hidden = Math.max(hidden, cut);
        scrolls = scrolls && ["auto", "scroll"].includes(overflow);
      }
    }
    const text = (el.textContent || el.getAttribute("alt") || "").trim().replace(/\\s+/g, " ");
    return {
      what: `${el.tagName.toLowerCase()} #${i + 1} "${text.slice(0, 40)}"`,
      left: left - c.left, right: c.right - right, width: right - left, column: c.width, hidden, scrolls,
    };
  });
  return {blocks, page: document.documentElement.scrollWidth - window.innerWidth};
}"""


def cut_blocks(measured: dict[str, Any], *, code_may_scroll: bool) -> list[str]:
    """What is wrong with the page's blocks as MEASURE_BLOCKS measured them: a block that reaches
    outside the column (by more than a pixel: rounding), content wider than its box that nothing
    lets the reader scroll to, a page wider than the window, and any table or picture that hides
    part of itself behind a scrollbar. Code too must be seen whole unless ``code_may_scroll`` (a phone,
    where a line of Python is wider than the screen and scrolls inside its own box)."""
    bad = [f"the page is {measured['page']} px wider than the window"] if measured["page"] > 1 else []
    for b in measured["blocks"]:
        where = f"{b['what']} ({b['width']:.0f} px wide in a column of {b['column']:.0f} px)"
        if b["left"] < -1 or b["right"] < -1:
            bad.append(f"{where} reaches outside the column by {-min(b['left'], b['right']):.0f} px")
        if b["hidden"] > 1 and not b["scrolls"]:
            bad.append(f"{where} cuts {b['hidden']} px of its content with no scrollbar")
        elif b["hidden"] > 1 and not (code_may_scroll and b["what"].startswith(("pre", "code"))):
            bad.append(f"{where} hides {b['hidden']} px of its content behind a scrollbar")
    return bad


@pytest.mark.slow
def test_the_index_page_opens_in_headless_chromium(served: str) -> None:
    """The home page in a desktop window (1280 x 800) and on a phone (390 x 844): screenshots of both,
    and no table, code block or picture clipped in either. Every table and picture is seen whole at
    both widths, every code block on the desktop; on the phone a code line wider than the screen may
    scroll inside its own box, never past the column or out of reach. The old layout, the picture
    floated beside the tables and code, cut the headline table's F1 columns and the code lines."""
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
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        external: list[str] = []
        failed: list[str] = []
        for width, height in ((390, 844), (1280, 800)):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on(
                "request",
                lambda req: None if req.url.startswith((served, "data:", "blob:")) else external.append(req.url),
            )
            page.on(
                "requestfailed",
                lambda req: None if req.failure == "net::ERR_ABORTED" else failed.append(f"{req.url} {req.failure}"),
            )  # leaving a page aborts its pending loads
            page.goto(served + "/")
            expect(page).to_have_title("hamner")
            expect(page.get_by_role("heading", level=1).first).to_contain_text("hamner")
            picture = page.locator("article img").first
            picture.scroll_into_view_if_needed()
            expect(picture).to_be_visible()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
            expect(page.locator("article table").first).to_contain_text("hamlearning")
            page.evaluate("window.scrollTo(0, 0)")  # else the fixed header lands mid-page in the screenshot
            page.screenshot(path=str(out_dir / f"docs-index-{width}.png"), full_page=True)
            problems += [
                f"at {width} px: {b}" for b in cut_blocks(page.evaluate(MEASURE_BLOCKS), code_may_scroll=width < 1280)
            ]
            if width == 1280:
                # the navigation works: the method page and its diagram, the training page and its generated keys
                page.get_by_role("link", name="The method").first.click()
                expect(page.locator("h1").first).to_contain_text("what is the paper's and what is ours")
                diagram = page.locator("article img[src$='method.svg']")
                assert page.evaluate("img => img.complete && img.naturalWidth > 0", diagram.element_handle())
                page.goto(served + "/training/")
                expect(page.locator("article")).to_contain_text("train.visual_dropout")
            page.close()
        browser.close()
    assert not external, f"the site made external requests: {external}"
    assert not failed, f"requests failed: {failed}"
    for width in (390, 1280):
        assert (out_dir / f"docs-index-{width}.png").stat().st_size > 10_000
    assert not problems, "the home page clips its blocks (screenshots in " + str(out_dir) + "):\n" + "\n".join(problems)
