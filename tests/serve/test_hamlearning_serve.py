"""``hamner serve`` over a HamLearning checkpoint: the image and caption are read by the tagger with the
checkpoint's own extractor, r and the level weights are answered, and the service agrees with the
Python API (tiny encoder, fake image models, in process through FastAPI's TestClient)."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from hamner.inference.tagger import Tagger  # noqa: E402
from hamner.models.tagger import TextTagger  # noqa: E402
from hamner.serve.app import TagResponse, create_app  # noqa: E402
from hamner.serve.service import ServeConfig, TaggingService  # noqa: E402
from hamner.vision.config import VisionConfig  # noqa: E402
from synthetic import TINY_POSTS, tiny_hamlearning_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FAKE = {"backbone": "fakes:tiny_backbone", "detector": "fakes:ColourDetector"}
POSTS = TINY_POSTS
TEXT = "obama in paris"
CAPTION = "a red square and a blue one"
LEVELS = ["global", "objects", "semantic"]
TEXT_PATH_NOTE = "tagged by the text path (r = 0)"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny, untrained HamLearning checkpoint (tests/synthetic.py)."""
    return tiny_hamlearning_checkpoint(tmp_path_factory.mktemp("mm-serve"))


@pytest.fixture(scope="module")
def client(setup: dict[str, Any]) -> Any:
    # the default ServeConfig.vision names the packaged image models: a multimodal model must not use it
    service = TaggingService.from_pretrained(setup["ckpt"], ServeConfig(max_image_bytes=200_000, max_image_pixels=1_000_000))
    with TestClient(create_app(service)) as c:
        yield c


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def entities(answer: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    return [(e["text"], e["type"], e["start"], e["end"]) for e in answer["entities"]]


def test_post_with_image_and_text_reads_the_image(client: TestClient, setup: dict[str, Any]) -> None:
    r = client.post("/v1/tag", json={"text": TEXT, "image_base64": b64(setup["image"])})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert 0 < answer["relevance"] < 1
    assert set(answer["level_weights"]) == set(LEVELS)
    assert sum(answer["level_weights"].values()) == pytest.approx(1, abs=1e-5)
    assert [o["label"] for o in answer["objects"]] == ["stop sign", "clock"]
    assert answer["objects"][0]["box"] == pytest.approx([10 / 120, 10 / 90, 50 / 120, 40 / 90], abs=1e-4)
    assert answer["image_words"][:3] == ["stop", "sign", "clock"]
    assert answer["image"] == {"width": 120, "height": 90, "format": "PNG", "used_for_tagging": True}
    assert not any("text-only" in n for n in answer["notes"]) and not any(TEXT_PATH_NOTE in n for n in answer["notes"])
    assert set(answer["timings_ms"]) >= {"queue", "image", "tagging", "decode", "total"}
    assert set(answer) == set(TagResponse.model_fields)


def test_text_only_request_is_tagged_by_the_text_path(client: TestClient) -> None:
    answer = client.post("/v1/tag", json={"text": TEXT}).json()
    assert answer["relevance"] == 0.0
    assert answer["image"] is None and answer["objects"] == [] and answer["image_words"] == []
    assert any(TEXT_PATH_NOTE in n for n in answer["notes"])
    assert not any("text-only" in n for n in answer["notes"])


def test_caption_only_request_weighs_the_semantic_level_alone(client: TestClient) -> None:
    answer = client.post("/v1/tag", data={"text": TEXT, "caption": CAPTION}).json()
    assert answer["level_weights"] == {"global": 0.0, "objects": 0.0, "semantic": 1.0}
    assert answer["image_words"] == CAPTION.split() and answer["objects"] == []
    assert answer["image"] is None and answer["notes"] == []


@pytest.mark.parametrize("with_image", [True, False], ids=["image", "caption-only"])
def test_the_service_and_the_python_api_agree(client: TestClient, setup: dict[str, Any], with_image: bool) -> None:
    image = setup["image"] if with_image else None
    files = {"image": ("p1.png", setup["image"].read_bytes(), "image/png")} if with_image else None
    r = client.post("/v1/tag", data={"text": TEXT, "caption": CAPTION}, files=files)
    assert r.status_code == 200, r.text
    answer = r.json()
    direct = Tagger.from_pretrained(setup["ckpt"]).tag(TEXT, image=image, caption=CAPTION)
    assert entities(answer) == [(e.text, e.type, e.start, e.end) for e in direct.entities]
    assert [w["tag"] for w in answer["words"]] == direct.tags
    assert answer["relevance"] == direct.relevance and answer["level_weights"] == direct.level_weights
    assert answer["image_words"] == list(direct.features.semantic.words)


def test_model_info_says_hamlearning_with_its_levels(client: TestClient) -> None:
    info = client.get("/v1/model").json()
    assert info["kind"] == "hamlearning" and info["uses_image_for_tagging"] is True
    assert info["levels"] == LEVELS
    assert info["switches"] == {
        "use_global": True, "use_objects": True, "use_spatial": True, "use_semantic": True,
        "semantic_mode": "both", "use_relevance": True, "num_iterations": 2,
    }  # fmt: skip
    assert info["object_detection"] is True and "LOC" in info["entity_types"]
    assert info["vision_fingerprint"] == TextTagger.from_pretrained(client.app.state.service.model_dir).config.vision_fingerprint  # type: ignore[attr-defined]
    spec = client.get("/openapi.json").json()
    assert set(info) == set(spec["components"]["schemas"]["ModelResponse"]["properties"])


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        (b"<html>404</html>", "image_unreadable", "is not a JPEG, PNG"),
        (None, "image_truncated", "ends early"),
    ],
    ids=["not an image", "truncated"],
)
def test_an_unreadable_image_is_a_400_naming_the_problem(
    client: TestClient, setup: dict[str, Any], payload: bytes | None, code: str, message: str
) -> None:
    data = payload if payload is not None else setup["image"].read_bytes()[:200]
    r = client.post("/v1/tag", data={"text": TEXT}, files={"image": ("a.png", data, "image/png")})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code and message in error["message"], error
    assert client.post("/v1/tag", json={"text": TEXT}).status_code == 200  # still serving


def test_the_servers_vision_settings_are_not_used(setup: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    odd = VisionConfig(backbone="no.such:backbone", detector="no.such:detector", max_image_side=48)
    with caplog.at_level(logging.INFO, logger="hamner.serve.service"):
        service = TaggingService.from_pretrained(setup["ckpt"], ServeConfig(vision=odd))
    assert service.extractor is service.tagger.extractor
    assert service.extractor.fingerprint == service.tagger.model.config.vision_fingerprint
    assert service.max_image_side != 48
    assert any("checkpoint's extractor settings" in rec.getMessage() for rec in caplog.records)


def test_detection_off_tags_with_the_caption_and_says_so(setup: dict[str, Any]) -> None:
    service = TaggingService.from_pretrained(setup["ckpt"], ServeConfig(detect_objects=False))
    assert service.extractor is None
    with TestClient(create_app(service)) as c:
        files = {"image": ("p1.png", setup["image"].read_bytes(), "image/png")}
        answer = c.post("/v1/tag", data={"text": TEXT, "caption": CAPTION}, files=files).json()
        assert answer["image"]["used_for_tagging"] is False and answer["objects"] == []
        assert answer["level_weights"] == {"global": 0.0, "objects": 0.0, "semantic": 1.0}
        assert any("the image was not read" in n for n in answer["notes"])
        bare = c.post("/v1/tag", data={"text": TEXT}, files=files).json()
        assert bare["relevance"] == 0.0 and any(TEXT_PATH_NOTE in n for n in bare["notes"])
        assert c.get("/v1/model").json()["object_detection"] is False
        plain = c.post("/v1/tag", json={"text": TEXT}).json()
        assert not any("not read" in n for n in plain["notes"])


def test_a_failing_extraction_fails_only_its_own_request(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    service = TaggingService.from_pretrained(setup["ckpt"], ServeConfig(batch_wait_ms=200, max_batch=8))
    original = service.tagger.features
    keys: list[str | None] = []

    def fragile(image: Any = None, caption: str | None = None, key: str | None = None) -> Any:
        keys.append(key)
        if caption == "BOOM":
            raise RuntimeError("an image the extractor cannot handle")
        return original(image, caption, key)

    monkeypatch.setattr(service.tagger, "features", fragile)
    image = b64(setup["image"])

    async def run() -> list[httpx.Response]:
        service.start()
        try:
            transport = httpx.ASGITransport(app=create_app(service), raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=60) as c:
                bodies = [{"text": TEXT, "image_base64": image, "caption": "BOOM" if i == 2 else CAPTION} for i in range(5)]
                return list(await asyncio.gather(*(c.post("/v1/tag", json=b) for b in bodies)))
        finally:
            service.close()

    replies = asyncio.run(run())
    assert [r.status_code for r in replies] == [200, 200, 500, 200, 200]
    assert replies[2].json()["error"]["code"] == "internal_error"
    good = [r.json() for i, r in enumerate(replies) if i != 2]
    assert any(k not in (None, "request-0") for k in keys)  # the requests did meet in one batch first
    assert all(a["relevance"] == good[0]["relevance"] and a["entities"] == good[0]["entities"] for a in good)


def test_the_page_has_a_place_for_the_level_weights(client: TestClient) -> None:
    assert 'id="level-weights"' in client.get("/").text
    script = client.get("/static/app.js").text
    assert 'getElementById("level-weights")' in script and "innerHTML" not in script
