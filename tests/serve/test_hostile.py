"""``hamner serve`` under hostile input (issue 30): big images decoded within a budget and a few at a
time, clients that go away mid-upload, invalid UTF-8 in forms, and posts too costly to tag."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import KNOWN_ENTITIES, KNOWN_POST  # noqa: E402
from hamner.errors import TextError  # noqa: E402
from hamner.serve import service as service_module  # noqa: E402
from hamner.serve.app import create_app  # noqa: E402
from hamner.serve.service import ServeConfig, TaggingService  # noqa: E402
from hamner.vision.config import VisionConfig  # noqa: E402

FAKE_VISION = VisionConfig(backbone="fakes:tiny_backbone", detector="fakes:ColourDetector", on_bad_image="error")


def make_service(model: Path, **settings: Any) -> TaggingService:
    return TaggingService.from_pretrained(model, ServeConfig(vision=FAKE_VISION, **settings))


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, "red" if mode == "RGB" else 0).save(buf, "PNG")
    return buf.getvalue()


def entities(answer: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    return [(e["text"], e["type"], e["start"], e["end"]) for e in answer["entities"]]


# -- 3. big images: a decoded-memory budget and a bounded number decoded at once ------------------
def test_small_file_of_many_pixels_over_the_decoded_budget_is_413(trained_tiny_model: Path) -> None:
    service = make_service(trained_tiny_model, max_image_decoded_mb=8)
    data = png((2000, 1500))  # 15 kB of PNG, 11 MiB decoded (PIL keeps RGB in 4 bytes a pixel)
    assert len(data) < 30_000
    with TestClient(create_app(service)) as c:
        r = c.post("/v1/tag", data={"text": KNOWN_POST}, files={"image": ("big.png", data, "image/png")})
        assert r.status_code == 413, r.text
        error = r.json()["error"]
        assert error["code"] == "image_too_large"
        for text in ("2000 x 1500", "11 MiB", "limit of 8 MiB", "--max-image-decoded-mb of hamner serve"):
            assert text in error["message"], (text, error["message"])
        ok = c.post("/v1/tag", data={"text": KNOWN_POST}, files={"image": ("small.png", png((1000, 1000)), "image/png")})
        assert ok.status_code == 200 and entities(ok.json()) == KNOWN_ENTITIES
        assert c.get("/v1/model").json()["limits"]["max_image_decoded_mb"] == 8


def test_pixel_limit_message_names_the_serve_option(trained_tiny_model: Path) -> None:
    service = make_service(trained_tiny_model, max_image_pixels=10_000)
    with TestClient(create_app(service)) as c:
        r = c.post("/v1/tag", data={"text": KNOWN_POST}, files={"image": ("big.png", png((200, 200)), "image/png")})
    assert r.status_code == 413
    message = r.json()["error"]["message"]
    assert "--max-image-pixels of hamner serve" in message and "in the config" not in message


def test_images_are_decoded_a_few_at_a_time_and_a_full_decoder_queue_answers_503(
    trained_tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = make_service(trained_tiny_model, max_decoding=2, max_decode_waiting=1)
    real = service_module.load_image
    lock = threading.Lock()
    running, most = 0, 0

    def slow_load(*args: Any, **kwargs: Any) -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.3)
        try:
            return real(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(service_module, "load_image", slow_load)
    image = png((64, 48))

    async def run() -> list[httpx.Response]:
        service.start()
        try:
            transport = httpx.ASGITransport(app=create_app(service))
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as c:
                posts = (c.post("/v1/tag", data={"text": KNOWN_POST}, files={"image": ("a.png", image, "image/png")}) for _ in range(8))
                return list(await asyncio.gather(*posts))
        finally:
            service.close()

    replies = asyncio.run(run())
    codes = sorted(r.status_code for r in replies)
    assert codes == [200, 200, 200, 503, 503, 503, 503, 503], codes  # 2 decoding + 1 waiting; the rest refused at once
    assert most == 2
    for r in replies:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
            error = r.json()["error"]
            assert error["code"] == "busy_decoding" and "--max-decoding" in error["message"]
        else:
            assert entities(r.json()) == KNOWN_ENTITIES
    assert service.decoding() == 0


# -- 6. a client that goes away mid-upload -------------------------------------------------------
def test_client_closing_mid_upload_is_logged_in_one_line_not_a_500(
    trained_tiny_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_service(trained_tiny_model))
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"text": "police in Lon', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/tag", "raw_path": b"/v1/tag", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"5000")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    with caplog.at_level(logging.INFO):
        asyncio.run(app(scope, receive, send))  # the 500 path re-raises here
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 499
    records = [r for r in caplog.records if r.name.startswith("hamner.serve")]
    assert len(records) == 1 and records[0].levelno == logging.INFO, [r.getMessage() for r in records]
    assert "closed the connection after sending 23 bytes" in records[0].getMessage()
    assert records[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- 7. invalid UTF-8 in forms is a 400, as in JSON -----------------------------------------------
INVALID_UTF8 = [
    ("json", {"content": b'{"text": "Obama in \xff Paris"}', "headers": {"content-type": "application/json"}}),
    ("urlencoded escape", {"content": b"text=Obama+in+%FF+Paris", "headers": {"content-type": "application/x-www-form-urlencoded"}}),
    ("urlencoded raw", {"content": b"text=Obama in \xff Paris", "headers": {"content-type": "application/x-www-form-urlencoded"}}),
    ("urlencoded caption", {"content": b"text=hi&caption=%C3%28", "headers": {"content-type": "application/x-www-form-urlencoded"}}),
    ("multipart", {"files": {"text": (None, b"Obama in \xff Paris")}}),
    ("multipart caption", {"files": {"text": (None, b"hi"), "caption": (None, b"a \xc3\x28 caption")}}),
]


@pytest.mark.parametrize(("name", "request_kw"), INVALID_UTF8, ids=[c[0] for c in INVALID_UTF8])
def test_invalid_utf8_is_a_400_in_every_body(trained_tiny_model: Path, name: str, request_kw: dict[str, Any]) -> None:
    with TestClient(create_app(make_service(trained_tiny_model))) as c:
        r = c.post("/v1/tag", **request_kw)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "invalid_utf8" and "not valid UTF-8" in error["message"], error
        if "caption" in name:
            assert "'caption'" in error["message"]
        elif name != "json":
            assert "'text'" in error["message"]


def test_valid_forms_still_read_unicode_and_plus_signs(trained_tiny_model: Path) -> None:
    with TestClient(create_app(make_service(trained_tiny_model))) as c:
        r = c.post("/v1/tag", content=b"text=Caf%C3%A9+in+London+city&caption=a+b", headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200 and r.json()["text"] == "Café in London city"
        r = c.post("/v1/tag", files={"text": (None, "Café in London city".encode())})
        assert r.status_code == 200 and r.json()["text"] == "Café in London city"
        r = c.post("/v1/tag", content=b"&".join([b"text=hi"] * 9), headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_form"


# -- 4. a post too costly to tag -----------------------------------------------------------------
def test_a_post_of_too_many_words_is_a_422_before_tagging(trained_tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = make_service(trained_tiny_model, max_words=50)
    tagged: list[int] = []
    real = service.tagger.tag_many
    monkeypatch.setattr(service.tagger, "tag_many", lambda texts, *a, **k: tagged.append(len(texts)) or real(texts, *a, **k))
    with TestClient(create_app(service)) as c:
        r = c.post("/v1/tag", json={"text": "!" * 51})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "too_many_words" and "51 words; the limit is 50 (--max-words" in error["message"]
        assert tagged == []  # refused before the model saw it
        ok = c.post("/v1/tag", json={"text": "!" * 20 + " " + KNOWN_POST})
        assert ok.status_code == 200 and entities(ok.json()) == [("London", "LOC", 31, 37)]
        assert c.get("/v1/model").json()["limits"]["max_words"] == 50


def test_a_text_error_from_the_tagger_is_a_422_not_a_500(trained_tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the Tagger's own per-post bound (a TextError) lands: app.JOB_ERRORS maps it."""
    service = make_service(trained_tiny_model)

    def refuse(texts: Any, *args: Any, **kwargs: Any) -> Any:
        raise TextError(0, "the post would take too long to tag")

    monkeypatch.setattr(service.tagger, "tag_many", refuse)
    with TestClient(create_app(service)) as c:
        r = c.post("/v1/tag", json={"text": KNOWN_POST})
    assert r.status_code == 422 and r.json()["error"] == {"code": "invalid_text", "message": "the post would take too long to tag"}
