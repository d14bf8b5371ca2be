"""Screenshot of the `hamner serve` page tagging a tweet with its picture (docs/serve-page.png).

    python scripts/page_screenshot.py --model runs/twitter2017/text-only/seed1/best \
        --image ../shared/data/twitter2017/images/16_05_01_147.jpg --text "..."

Drives Debian's chromium through Playwright (scripts/install_browser.sh installs it).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from hamner.serve.process import running_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--text", required=True)
    parser.add_argument("--caption")
    parser.add_argument("--width", type=int, default=820)
    parser.add_argument("--out", default="docs/serve-page.png")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found: bash scripts/install_browser.sh")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with running_server(args.model, "--threads", "2") as (base, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": 900})
        page.goto(base + "/")
        page.get_by_label("Tweet").fill(args.text)
        page.get_by_label("Picture (optional)", exact=True).set_input_files(args.image)
        if args.caption:
            page.get_by_label("Caption of the picture (optional)").fill(args.caption)
        page.get_by_role("button", name="Tag").click()
        expect(page.locator("#output")).to_be_visible(timeout=60_000)
        page.wait_for_timeout(300)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
