"""The JSON API and the page, in process (FastAPI's TestClient), with the tiny trained tagger and fake image models."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import KNOWN_ENTITIES, KNOWN_POST  # noqa: E402
from fakes import scene  # noqa: E402
from hamner.inference.tagger import Tagger  # noqa: E402
from hamner.serve.app import TagResponse, create_app  # noqa: E402
from hamner.serve.service import ServeConfig, TaggingService  # noqa: E402
from hamner.vision.config import VisionConfig  # noqa: E402

FAKE_VISION = VisionConfig(backbone="fakes:tiny_backbone", detector="fakes:ColourDetector", on_bad_image="error")


def make_service(model: Path, **settings: Any) -> TaggingService:
    return TaggingService.from_pretrained(model, ServeConfig(vision=FAKE_VISION, **settings))


@pytest.fixture(scope="module")
def client(trained_tiny_model: Path) -> Any:
    service = make_service(trained_tiny_model, max_image_bytes=200_000, max_image_pixels=1_000_000, max_text_chars=300)
    with TestClient(create_app(service)) as c:
        yield c


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def entities(answer: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    return [(e["text"], e["type"], e["start"], e["end"]) for e in answer["entities"]]


def test_health_and_model(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    info = client.get("/v1/model").json()
    assert info["labels"][0] == "O" and info["kind"] == "text-only"
    assert info["entity_types"] == ["PER", "LOC", "ORG", "MISC"]  # the checkpoint's label order (the page's legend)
    assert re.fullmatch(r"[0-9a-f]{64}", info["config_fingerprint"]) and re.fullmatch(r"[0-9a-f]{64}", info["vision_fingerprint"])


def test_tag_json_matches_the_python_api(client: TestClient, trained_tiny_model: Path) -> None:
    r = client.post("/v1/tag", json={"text": KNOWN_POST})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert entities(answer) == KNOWN_ENTITIES
    direct = Tagger.from_pretrained(trained_tiny_model).tag(KNOWN_POST)
    assert [w["tag"] for w in answer["words"]] == direct.tags
    assert [(w["text"], w["start"], w["end"]) for w in answer["words"]] == [(t.text, t.start, t.end) for t in direct.tokens]
    assert answer["image"] is None and answer["objects"] == [] and answer["relevance"] is None
    assert set(answer["timings_ms"]) >= {"queue", "tagging", "total"}


def test_tag_multipart_with_image_reports_objects(client: TestClient) -> None:
    files = {"image": ("scene.png", png_bytes(scene()), "image/png")}
    r = client.post("/v1/tag", data={"text": KNOWN_POST, "caption": "a red sign"}, files=files)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert entities(answer) == KNOWN_ENTITIES
    assert [o["label"] for o in answer["objects"]] == ["stop sign", "clock"]
    assert answer["objects"][0]["box"] == pytest.approx([10 / 120, 10 / 90, 50 / 120, 40 / 90], abs=1e-4)
    assert answer["image"] == {"width": 120, "height": 90, "format": "PNG", "used_for_tagging": False}
    assert answer["image_words"][:3] == ["stop", "sign", "clock"] and answer["image_words"][-3:] == ["a", "red", "sign"]
    assert any("text-only" in n for n in answer["notes"])


@pytest.mark.parametrize("prefix", ["", "data:image/jpeg;base64,"])
def test_tag_json_with_base64_image(client: TestClient, prefix: str) -> None:
    data = base64.b64encode(png_bytes(scene(), "JPEG")).decode()
    r = client.post("/v1/tag", json={"text": KNOWN_POST, "image_base64": prefix + data})
    assert r.status_code == 200, r.text
    assert [o["label"] for o in r.json()["objects"]] == ["stop sign", "clock"]


def test_urlencoded_form_without_image(client: TestClient) -> None:
    r = client.post("/v1/tag", data={"text": KNOWN_POST, "caption": "a city"})
    assert r.status_code == 200 and entities(r.json()) == KNOWN_ENTITIES


def test_empty_file_field_from_a_browser_form_means_no_image(client: TestClient) -> None:
    r = client.post("/v1/tag", data={"text": KNOWN_POST}, files={"image": ("", b"", "application/octet-stream")})
    assert r.status_code == 200 and r.json()["image"] is None


BIG = png_bytes(Image.effect_noise((300, 300), 60).convert("RGB"))  # noise does not compress: 200-330 kB
assert 200_000 < len(BIG) < 330_000
HUGE_PIXELS = png_bytes(Image.new("1", (1500, 1000)))  # 1.5 M pixels in a few hundred bytes
TRUNCATED = png_bytes(scene(), "JPEG")[:400]

BAD_INPUTS: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("empty text", {"json": {"text": ""}}, 422, "empty_text", "empty"),
    ("whitespace text", {"json": {"text": "  \n\t "}}, 422, "empty_text", "whitespace"),
    ("missing text", {"json": {"caption": "x"}}, 422, "invalid_request", "text: field required"),
    ("text not a string", {"json": {"text": 12}}, 422, "invalid_request", "text:"),
    ("unknown field", {"json": {"text": "hi", "img": "x"}}, 422, "invalid_request", "img: unknown field"),
    ("text too long", {"json": {"text": "a " * 200}}, 422, "text_too_long", "400 characters; the limit is 300"),
    ("invalid json", {"content": b'{"text": "hi",', "headers": {"content-type": "application/json"}}, 400, "invalid_json", "not valid JSON"),
    ("json array", {"json": ["hi"]}, 422, "invalid_request", "must be an object"),
    ("text/plain", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported_content_type", "text/plain"),
    ("no content type", {"content": b"hello"}, 415, "unsupported_content_type", "(none)"),
    ("invalid base64", {"json": {"text": "hi", "image_base64": "%%%not base64"}}, 400, "invalid_base64", "not valid base64"),
    ("not an image", {"data": {"text": "hi"}, "files": {"image": ("a.jpg", b"<html>404</html>", "image/jpeg")}}, 400, "image_unreadable", "is not a JPEG, PNG"),
    ("postscript", {"data": {"text": "hi"}, "files": {"image": ("a.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "image/jpeg")}}, 400, "image_unreadable", "is not a JPEG, PNG"),
    ("lone surrogate", {"content": b'{"text": "Obama \\ud800 Paris"}', "headers": {"content-type": "application/json"}}, 422, "invalid_text", "unpaired surrogate at character 6"),
    ("surrogate caption", {"content": b'{"text": "hi", "caption": "a \\udc80"}', "headers": {"content-type": "application/json"}}, 422, "invalid_text", "caption contains"),
    ("deep json", {"content": b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "headers": {"content-type": "application/json"}}, 400, "invalid_json", "nested too deeply"),
    ("huge integer", {"content": b'{"text": "hi", "caption": ' + b"9" * 5000 + b"}", "headers": {"content-type": "application/json"}}, 400, "invalid_json", "cannot be read"),
    ("truncated image", {"data": {"text": "hi"}, "files": {"image": ("a.jpg", TRUNCATED, "image/jpeg")}}, 400, "image_truncated", "ends early"),
    ("too many bytes", {"data": {"text": "hi"}, "files": {"image": ("a.png", BIG, "image/png")}}, 413, "image_too_large", "the limit is 200,000"),
    ("too many pixels", {"data": {"text": "hi"}, "files": {"image": ("a.png", HUGE_PIXELS, "image/png")}}, 413, "image_too_large", "1,500,000 pixels"),
    ("text as a file", {"files": {"text": ("t.txt", b"hi", "text/plain")}}, 422, "invalid_request", "text must be a form field"),
    ("no text in form", {"data": {"caption": "x"}, "files": {"image": ("a.png", png_bytes(scene()), "image/png")}}, 422, "invalid_request", "text: field required"),
    ("unknown form field", {"data": {"text": "hi", "colour": "red"}}, 422, "invalid_request", "unknown form field"),
    ("empty image file", {"json": {"text": "hi", "image_base64": ""}}, 400, "empty_image", "0 bytes"),
]


@pytest.mark.parametrize(("name", "request_kw", "status", "code", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(
    client: TestClient, name: str, request_kw: dict[str, Any], status: int, code: str, message: str
) -> None:
    r = client.post("/v1/tag", **request_kw)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code and message in error["message"], error
    ok = client.post("/v1/tag", json={"text": KNOWN_POST})
    assert ok.status_code == 200 and entities(ok.json()) == KNOWN_ENTITIES


def test_request_over_the_body_limit(trained_tiny_model: Path) -> None:
    service = make_service(trained_tiny_model, max_image_bytes=1000, max_text_chars=100)
    with TestClient(create_app(service)) as c:
        limit = service.config.max_body_bytes
        r = c.post("/v1/tag", content=b"x" * (limit + 1), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert c.get("/healthz").status_code == 200


def test_wrong_method_and_path_answer_json_errors(client: TestClient) -> None:
    r = client.get("/v1/tag")
    assert r.status_code == 405 and r.json()["error"]["code"] == "http_error"
    assert client.get("/nope").json()["error"]["message"] == "Not Found"


def test_openapi_matches_the_server(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/tag"]["post"]
    content = op["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data", "application/x-www-form-urlencoded"}
    assert set(content["application/json"]["schema"]["properties"]) == {"text", "caption", "image_base64", "offsets"}
    assert set(content["multipart/form-data"]["schema"]["properties"]) == {"text", "caption", "image"}
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/TagResponse")
    for status in ("400", "413", "415", "422", "503"):
        assert op["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    form = content["multipart/form-data"]["schema"]
    assert form["additionalProperties"] is False and form["properties"]["text"]["maxLength"] == 300
    assert content["application/json"]["schema"]["properties"]["text"]["maxLength"] == 300
    for path, model in (("/healthz", "HealthResponse"), ("/v1/model", "ModelResponse")):
        ref = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith(model)
        served = client.get(path).json()
        assert set(served) == set(spec["components"]["schemas"][model]["properties"])
    # every field the server answers is in the schema, and nothing else
    answer = client.post("/v1/tag", json={"text": KNOWN_POST}).json()
    schema_fields = set(spec["components"]["schemas"]["TagResponse"]["properties"])
    assert set(answer) == schema_fields == set(TagResponse.model_fields)
    # each bad input's status is documented
    assert {str(b[2]) for b in BAD_INPUTS} <= set(op["responses"])
    assert {"/healthz", "/v1/model", "/v1/tag"} <= set(spec["paths"])


def test_page_and_assets_are_local(client: TestClient) -> None:
    assert client.get("/docs").status_code == 404  # FastAPI's docs pages would load a CDN
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert '<form id="tag-form"' in html and 'type="file"' in html and 'id="tag-button"' in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    for asset in assets:
        assert not asset.startswith(("http:", "https:", "//")), asset  # no CDN, no external request
        if asset.startswith("/static/"):
            r = client.get(asset)
            assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text


def test_concurrent_requests_are_batched_and_answered_correctly(trained_tiny_model: Path) -> None:
    import httpx

    async def run(batching: bool) -> list[dict[str, Any]]:
        service = make_service(trained_tiny_model, batching=batching, batch_wait_ms=200, max_batch=8)
        app = create_app(service)
        service.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                texts = [KNOWN_POST if i % 2 == 0 else "the NBA game today !" for i in range(8)]
                replies = await asyncio.gather(*(c.post("/v1/tag", json={"text": t}) for t in texts))
        finally:
            service.close()
        assert all(r.status_code == 200 for r in replies)
        return [r.json() for r in replies]

    batched = asyncio.run(run(True))
    assert max(a["batch_size"] for a in batched) > 1
    single = asyncio.run(run(False))
    assert all(a["batch_size"] == 1 for a in single)
    assert [a["entities"] for a in batched] == [a["entities"] for a in single]
    assert entities(batched[0]) == KNOWN_ENTITIES


def test_a_post_past_the_encoder_limit_is_read_in_windows_and_reported(client: TestClient) -> None:
    long_post = " ".join(["in"] * 90)  # 90 one-piece words; the tiny encoder reads 64 positions (62 words)
    answer = client.post("/v1/tag", json={"text": long_post}).json()
    assert len(answer["words"]) == 90 and answer["windows"] == 2
    assert any("longer than the encoder's 64 sub-token input: it was read in 2 overlapping windows" in n for n in answer["notes"])
    # and the serving page says so: no word of a long post is tagged O for its length
    doc = " ".join((Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text(encoding="utf-8").split())
    assert "read in overlapping windows" in doc
    assert not re.search(r"sub-token limit[^.]*tagged `O`", doc), "docs/serving.md says words past the limit are tagged O"


def test_offsets_in_utf16_units_on_request(client: TestClient) -> None:
    text = "\U0001F525\U0001F525 " + KNOWN_POST  # two emoji: two code points, four UTF-16 units
    points = client.post("/v1/tag", json={"text": text}).json()
    units = client.post("/v1/tag", json={"text": text, "offsets": "utf16"}).json()
    query = client.post("/v1/tag?offsets=utf16", json={"text": text}).json()
    assert points["offsets"] == "codepoints" and units["offsets"] == query["offsets"] == "utf16"
    assert [e["start"] for e in units["entities"]] == [e["start"] + 2 for e in points["entities"]] == [s + 5 for _, _, s, _ in KNOWN_ENTITIES]
    assert units["words"] == query["words"] and units["words"][2]["start"] == 5 and points["words"][2]["start"] == 3
    form = client.post("/v1/tag?offsets=utf16", data={"text": text}).json()
    assert form["entities"] == units["entities"]
    bad = client.post("/v1/tag?offsets=bytes", json={"text": text})
    assert bad.status_code == 422 and "offsets" in bad.json()["error"]["message"]
    clash = client.post("/v1/tag?offsets=codepoints", json={"text": text, "offsets": "utf16"})
    assert clash.status_code == 422


def test_one_failing_request_does_not_fail_its_batch(trained_tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    service = make_service(trained_tiny_model, batch_wait_ms=200, max_batch=8)
    original = service.tagger.tag_many

    def fragile(texts, *args, **kwargs):  # type: ignore[no-untyped-def]
        if any("BOOM" in t for t in texts):
            raise RuntimeError("a request the model cannot handle")
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(service.tagger, "tag_many", fragile)

    async def run() -> list[httpx.Response]:
        service.start()
        try:
            transport = httpx.ASGITransport(app=create_app(service), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                texts = [KNOWN_POST] * 5 + ["BOOM"] + [KNOWN_POST] * 2
                return list(await asyncio.gather(*(c.post("/v1/tag", json={"text": t}) for t in texts)))
        finally:
            service.close()

    replies = asyncio.run(run())
    assert [r.status_code for r in replies] == [200] * 5 + [500] + [200] * 2
    assert replies[5].json()["error"]["code"] == "internal_error"
    assert all(entities(r.json()) == KNOWN_ENTITIES for i, r in enumerate(replies) if i != 5)


def test_full_queue_answers_503(trained_tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import httpx

    service = make_service(trained_tiny_model, max_queue=1, batching=False)
    original = service.tagger.tag_many

    def slow(texts, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(service.tagger, "tag_many", slow)

    async def run() -> list[httpx.Response]:
        service.start()
        try:
            transport = httpx.ASGITransport(app=create_app(service))
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as c:
                return list(await asyncio.gather(*(c.post("/v1/tag", json={"text": KNOWN_POST}) for _ in range(6))))
        finally:
            service.close()

    replies = asyncio.run(run())
    codes = [r.status_code for r in replies]
    assert 503 in codes and 200 in codes and set(codes) <= {200, 503}
    busy = [r for r in replies if r.status_code == 503]
    assert all(r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "busy" for r in busy)


def test_withdrawn_requests_are_skipped(trained_tiny_model: Path) -> None:
    from hamner.serve.service import TagJob

    service = make_service(trained_tiny_model, batch_wait_ms=100)

    async def run() -> None:
        service.start()
        try:
            gone = TagJob(text=KNOWN_POST, caption=None, image=None, cancelled=True)
            waiting = asyncio.ensure_future(service.submit(gone))
            outcome = await service.submit(TagJob(text=KNOWN_POST, caption=None, image=None))
            assert outcome.batch_size == 1 and not waiting.done()
            waiting.cancel()
        finally:
            service.close()

    asyncio.run(run())
    assert service.requests == 1


def test_bad_settings_are_config_errors(trained_tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hamner.cli import main
    from hamner.errors import ConfigError

    with pytest.raises(ConfigError, match="serve.max_batch must be >= 1"):
        ServeConfig(max_batch=0)
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--model", str(trained_tiny_model), "--max-image-mb", "0"])
    assert exit_info.value.code == 2 and "expected a positive integer" in capsys.readouterr().err


def test_json_answer_is_plain_json(client: TestClient) -> None:
    r = client.post("/v1/tag", json={"text": "police in London city 🚓"})
    assert r.status_code == 200
    assert json.loads(r.content)["text"].endswith("🚓")


def test_an_unknown_field_names_every_allowed_field(client: TestClient) -> None:
    r = client.post("/v1/tag", json={"text": "Obama", "lang": "en"})
    assert r.status_code == 422
    assert r.json()["error"]["message"] == "lang: unknown field (expected text, caption, image_base64, offsets)"
