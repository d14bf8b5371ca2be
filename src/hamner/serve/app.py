"""The web layer: a JSON API (``POST /v1/tag``, ``GET /v1/model``, ``GET /healthz``) and one page.

Every bad input gets a 4xx answer ``{"error": {"code": ..., "message": ...}}`` that says what was
wrong: 400 (invalid JSON, invalid UTF-8 in any body, invalid base64, an unreadable or truncated
image, a malformed form), 413 (request body, image bytes, image pixels or the image's decoded memory
over the limit), 415 (a content type other than JSON or a form), 422 (no text, empty text, text over
the limit, more words than the limit, a field of the wrong type or an unknown field); a busy server
answers 503 with ``Retry-After``. Images are decoded in the service's small decoding pool, and
tagging runs on the service's worker thread, so the event loop never blocks. A client that goes away
mid-request is logged in one line (no traceback, no 5xx).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from hamner import __version__
from hamner.errors import ImageError, TextError
from hamner.inference.tagger import utf16_offsets
from hamner.serve.service import DecodersBusy, QueueFull, TaggingService, TagJob, TagOutcome, TooManyWords

log = logging.getLogger(__name__)


# -- schema ---------------------------------------------------------------------------------------
class TagJSONRequest(BaseModel):
    """``POST /v1/tag`` as JSON."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(description="the post's text")
    caption: str | None = Field(None, description="a caption of the image, if you have one")
    image_base64: str | None = Field(None, description="the image file's bytes in base64 (a data: URL is accepted)")
    offsets: Literal["codepoints", "utf16"] | None = Field(
        None, description="unit of the answer's start/end: codepoints (default; Python) or utf16 (JavaScript string indices)"
    )


class WordOut(BaseModel):
    text: str
    start: int = Field(description="offset of the word in text, in Unicode code points, or UTF-16 units if asked (offsets)")
    end: int
    tag: str = Field(description="BIO tag")


class EntityOut(BaseModel):
    text: str
    type: str
    start: int = Field(description="offset of the entity in text, in Unicode code points, or UTF-16 units if asked (offsets)")
    end: int


class ObjectOut(BaseModel):
    label: str
    score: float
    box: list[float] = Field(description="x1, y1, x2, y2 as fractions of the image's width and height")


class ImageOut(BaseModel):
    width: int
    height: int
    format: str | None
    used_for_tagging: bool = Field(
        description="true when a multimodal model read the image; false for a text-only model (the image is analysed "
        "and shown but not read by the tagger) or when object detection is off on this server"
    )


class TagResponse(BaseModel):
    text: str
    words: list[WordOut]
    entities: list[EntityOut]
    relevance: float | None = Field(
        description="text-image relevance r in [0, 1] of a multimodal model (0.0 for a post with neither image nor "
        "caption: the text path); null for a text-only model"
    )
    level_weights: dict[str, float] | None = Field(
        description="a multimodal model's weights of its visual levels (global / objects / semantic): they sum to 1 "
        "over the levels the post has, 0 for a level it lacks; null for a text-only model"
    )
    objects: list[ObjectOut]
    image_words: list[str] = Field(
        description="semantic words of the image: detected classes, ImageNet classes, caption (for a multimodal "
        "model: the words it read, the caption's alone when the image was not read)"
    )
    image: ImageOut | None
    notes: list[str]
    offsets: str = Field(description="the unit of every start/end in this answer: codepoints or utf16")
    windows: int = Field(description="encoder inputs the post was read in: more than 1 for a post longer than one input (overlapping windows)")
    batch_size: int = Field(description="how many requests were tagged together with this one")
    timings_ms: dict[str, float]


class HealthResponse(BaseModel):
    status: str
    version: str
    requests: int = Field(description="requests tagged since start")
    batches: int = Field(description="tagging batches run since start")
    queued: int = Field(description="requests waiting now")


class ModelResponse(BaseModel):
    kind: str = Field(description="text-only, or the multimodal model's name (hamlearning)")
    uses_image_for_tagging: bool
    labels: list[str] = Field(description="the checkpoint's BIO tags, O first (the CRF's states)")
    entity_types: list[str] = Field(
        description="the checkpoint's entity types in its label order (the web page's legend and colours follow it)"
    )
    encoder: str
    tokenizer_style: str
    max_subtokens: int = Field(description="one encoder input's sub-tokens; a longer post is read in overlapping windows (see notes)")
    model_dir: str | None
    config_fingerprint: str | None = Field(description="SHA-256 of the checkpoint's hamner_config.json")
    object_detection: bool = Field(description="whether attached images are run through the image extractor")
    vision_fingerprint: str | None = Field(
        description="fingerprint of the image extractor's settings and weights (a multimodal model's: the one it was trained with)"
    )
    limits: dict[str, int]
    batching: dict[str, Any]
    levels: list[str] | None = Field(None, description="the visual levels a multimodal model fuses (global, objects, semantic); null for a text-only model")
    switches: dict[str, Any] | None = Field(
        None,
        description="a multimodal model's switches: use_global, use_objects, use_spatial, use_semantic, semantic_mode, "
        "use_relevance, num_iterations; null for a text-only model",
    )


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ClientGone(Exception):
    """The client closed the connection before its request was read or answered: nobody to answer."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"the client closed the connection {stage}")
        self.stage = stage


# Exceptions a tagging job may end with that are the post's fault: (class, status, code), the first
# that matches wins (a subclass before its base). The Tagger's own per-post cost bound maps here too.
JOB_ERRORS: tuple[tuple[type[Exception], int, str], ...] = (
    (TooManyWords, 422, "too_many_words"),
    (TextError, 422, "invalid_text"),
)
RETRY_AFTER_S = 1  # what a 503 asks the client to wait: a queue or a decoding thread frees in about that


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


_MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["text"],
    "properties": {
        "text": {"type": "string", "description": "the post's text"},
        "caption": {"type": "string", "description": "a caption of the image, if you have one"},
        "image": {"type": "string", "format": "binary", "description": "the image file"},
    },
}
_URLENCODED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["text"],
    "properties": {k: v for k, v in _MULTIPART_SCHEMA["properties"].items() if k != "image"},
}


def _with_limits(schema: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """A copy of a request schema with this server's text limits (so the schema says what it enforces)."""
    out = copy.deepcopy(schema)
    for name in ("text", "caption"):
        if name in out["properties"]:
            out["properties"][name]["maxLength"] = max_chars
    if "text" in out["properties"]:
        out["properties"]["text"]["minLength"] = 1
    return out
ACCEPTED_TYPES = ("application/json", "multipart/form-data", "application/x-www-form-urlencoded")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "invalid JSON, UTF-8 or base64, a malformed form, an unreadable or truncated image"),
        (413, "request, image bytes, image pixels or the image's decoded memory over the limit"),
        (415, "content type is not application/json, multipart/form-data or application/x-www-form-urlencoded"),
        (503, "too many requests or images are waiting (see --max-queue, --max-decode-waiting); retry after Retry-After seconds"),
        (422, "text missing, empty, too long or of too many words; a field of the wrong type; an unknown field"),
    )
}


# -- the app --------------------------------------------------------------------------------------
def create_app(service: TaggingService) -> FastAPI:
    """The FastAPI app around a loaded :class:`TaggingService` (started and stopped with the app)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        service.close()

    app = FastAPI(
        title="hamner",
        version=__version__,
        description="Named entities in tweets from the text and the attached image (HamLearning).",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's docs pages load their scripts from a CDN; the schema is at /openapi.json
        redoc_url=None,
    )
    app.state.service = service
    cfg = service.config
    static = resources.files("hamner.serve").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        log.info("%s %s from %s: %s", request.method, request.url.path, client, exc)
        return Response(status_code=499)  # nobody reads it; not an error of the server

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid_request", _describe_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:  # the safety net: log, answer, keep serving
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal_error", f"internal error ({type(exc).__name__}); the server keeps running")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(static.joinpath("index.html")), media_type="text/html")

    @app.get("/healthz", response_model=HealthResponse)
    async def healthz() -> HealthResponse:
        return HealthResponse(status="ok", version=__version__, requests=service.requests, batches=service.batches, queued=service.queued())

    @app.get("/v1/model", response_model=ModelResponse)
    async def model_info() -> ModelResponse:
        return ModelResponse(**service.describe())

    @app.post(
        "/v1/tag",
        response_model=TagResponse,
        responses=_ERRORS,
        summary="Tag one post (text, optional image and caption)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _with_limits(TagJSONRequest.model_json_schema(), cfg.max_text_chars)},
                    "multipart/form-data": {"schema": _with_limits(_MULTIPART_SCHEMA, cfg.max_text_chars)},
                    "application/x-www-form-urlencoded": {"schema": _with_limits(_URLENCODED_SCHEMA, cfg.max_text_chars)},
                },
            }
        },
    )
    async def tag(
        request: Request,
        offsets: Literal["codepoints", "utf16"] | None = Query(
            None, description="unit of the answer's start/end: codepoints (default) or utf16 (JavaScript string indices)"
        ),
    ) -> TagResponse:
        t0 = time.perf_counter()
        text, caption, image_bytes, body_offsets = await _parse_request(request, cfg.max_body_bytes)
        if offsets is not None and body_offsets is not None and offsets != body_offsets:
            raise ApiError(422, "invalid_request", f"offsets is {offsets!r} in the query but {body_offsets!r} in the body")
        unit = body_offsets or offsets or "codepoints"
        _check_unicode("text", text)
        if caption is not None:
            _check_unicode("caption", caption)
        if not text.strip():
            raise ApiError(422, "empty_text", "text is empty or only whitespace; send the post's words")
        if len(text) > cfg.max_text_chars:
            raise ApiError(422, "text_too_long", f"text has {len(text)} characters; the limit is {cfg.max_text_chars}")
        if caption is not None and len(caption) > cfg.max_text_chars:
            raise ApiError(422, "caption_too_long", f"caption has {len(caption)} characters; the limit is {cfg.max_text_chars}")
        loaded = None
        decode_ms = 0.0
        if image_bytes is not None:
            if len(image_bytes) == 0:
                raise ApiError(400, "empty_image", "the image is empty (0 bytes)")
            if len(image_bytes) > cfg.max_image_bytes:
                raise ApiError(413, "image_too_large", f"the image has {len(image_bytes):,} bytes; the limit is {cfg.max_image_bytes:,}")
            t1 = time.perf_counter()
            try:
                loaded = await service.decode(image_bytes, name="image")
            except ImageError as exc:
                status = 413 if exc.kind == "too_large" else 400
                raise ApiError(status, f"image_{exc.kind}", str(exc)) from None
            except DecodersBusy as exc:
                raise ApiError(
                    503, "busy_decoding",
                    f"{exc.decoding} images are being decoded and {exc.waiting} wait (--max-decoding, --max-decode-waiting); "
                    f"try again in {RETRY_AFTER_S} s",
                    {"Retry-After": str(RETRY_AFTER_S)},
                ) from None  # fmt: skip
            decode_ms = (time.perf_counter() - t1) * 1000
        job = TagJob(text=text, caption=caption, image=loaded)
        try:
            fut = service.enqueue(job)
        except QueueFull as exc:
            raise ApiError(
                503, "busy", f"{exc.waiting} requests are waiting (--max-queue); try again in {RETRY_AFTER_S} s",
                {"Retry-After": str(RETRY_AFTER_S)},
            ) from None  # fmt: skip
        try:
            outcome = await _wait_or_disconnect(request, fut, job)
        except tuple(cls for cls, _, _ in JOB_ERRORS) as exc:  # the post's own fault, found by the worker (e.g. too many words)
            status, code = next((status, code) for cls, status, code in JOB_ERRORS if isinstance(exc, cls))
            raise ApiError(status, code, getattr(exc, "detail", str(exc))) from None
        return _response(outcome, loaded, caption, decode_ms, (time.perf_counter() - t0) * 1000, service, unit)

    return app


async def _wait_or_disconnect(request: Request, fut: asyncio.Future[TagOutcome], job: TagJob) -> TagOutcome:
    """The job's outcome; if the client goes away first, the job is withdrawn so the worker skips it."""
    while True:
        done, _ = await asyncio.wait({fut}, timeout=0.25)
        if done:
            return fut.result()
        if await request.is_disconnected():
            job.cancelled = True
            fut.cancel()
            raise ClientGone("while its request waited to be tagged")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "request_too_large", f"the request has {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "request_too_large", f"the request is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone(f"after sending {size:,} bytes of its request") from None
    return b"".join(chunks)


async def _parse_request(request: Request, limit: int) -> tuple[str, str | None, bytes | None, str | None]:
    """(text, caption, image bytes, offsets unit or None) from a JSON body or a multipart form; ApiError otherwise."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ACCEPTED_TYPES:
        raise ApiError(
            415, "unsupported_content_type",
            f"content type {ctype or '(none)'!r} is not accepted; send application/json or multipart/form-data "
            "(or application/x-www-form-urlencoded without an image)",
        )
    body = await _read_body(request, limit)
    if ctype == "application/json":
        try:
            data = json.loads(body)
        except UnicodeDecodeError as exc:
            raise ApiError(400, "invalid_utf8", _utf8_message("the JSON body", exc)) from None
        except json.JSONDecodeError as exc:
            raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
        except RecursionError:
            raise ApiError(400, "invalid_json", "the JSON body is nested too deeply") from None
        except ValueError as exc:  # e.g. an integer with more digits than Python converts
            raise ApiError(400, "invalid_json", f"the JSON body cannot be read: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(422, "invalid_request", f"the JSON body must be an object with a 'text' field, got {type(data).__name__}")
        try:
            req = TagJSONRequest.model_validate(data)
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", _describe_validation(exc.errors())) from None
        image = _decode_base64(req.image_base64) if req.image_base64 is not None else None
        return req.text, req.caption, image, req.offsets
    form = await _parse_form(request, body, ctype)
    unknown = sorted(set(form.keys()) - {"text", "caption", "image"})
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown form field(s) {unknown}; expected text, caption, image")
    text = form.get("text")
    if text is None:
        raise ApiError(422, "invalid_request", "text: field required")
    if not isinstance(text, str):
        raise ApiError(422, "invalid_request", "text must be a form field, not a file")
    caption = form.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise ApiError(422, "invalid_request", "caption must be a form field, not a file")
    upload = form.get("image")
    image_bytes = None
    if isinstance(upload, UploadFile):
        image_bytes = await upload.read()
        if image_bytes == b"" and not upload.filename:
            image_bytes = None  # a browser form with no file chosen
    elif isinstance(upload, str) and upload:
        raise ApiError(422, "invalid_request", "image must be a file part (multipart upload), not a text field")
    await form.close()
    return text, caption or None, image_bytes, None


MAX_FORM_FIELDS = 8


class _InvalidFormText(Exception):
    def __init__(self, what: str, exc: UnicodeDecodeError) -> None:
        super().__init__(_utf8_message(what, exc))


def _utf8_message(what: str, exc: UnicodeDecodeError) -> str:
    byte = exc.object[exc.start : exc.start + 1].hex()
    return f"{what} is not valid UTF-8 (byte 0x{byte} at offset {exc.start}); send text encoded as UTF-8"


def _strict_decode(data: bytes, what: str, codec: str = "utf-8") -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _InvalidFormText(what, exc) from None


class _StrictMultiPartParser(MultiPartParser):
    """Starlette's multipart parser, except that a text field that is not valid in the form's charset
    (UTF-8 unless the content type says otherwise) is refused instead of read as latin-1."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            _strict_decode(bytes(part.data), f"form field {part.field_name!r}", self._charset or "utf-8")
        super().on_part_end()


def _urlencoded_fields(body: bytes) -> Iterator[tuple[str, str]]:
    """``name=value`` pairs of a urlencoded body, percent-escapes decoded as strict UTF-8."""
    for count, pair in enumerate(p for p in body.split(b"&") if p):
        if count == MAX_FORM_FIELDS:
            raise ApiError(400, "invalid_form", f"the form has more than {MAX_FORM_FIELDS} fields")
        raw_name, _, raw_value = pair.partition(b"=")
        name = _strict_decode(unquote_to_bytes(raw_name.replace(b"+", b" ")), "a form field's name")
        yield name, _strict_decode(unquote_to_bytes(raw_value.replace(b"+", b" ")), f"form field {name!r}")


async def _parse_form(request: Request, body: bytes, ctype: str) -> FormData:
    """A multipart or urlencoded form from the bytes already read (and limited); invalid UTF-8 in a
    text field is a 400 ``invalid_utf8``, as in a JSON body (Starlette would swap in U+FFFD or latin-1)."""
    try:
        if ctype == "application/x-www-form-urlencoded":
            return FormData(list(_urlencoded_fields(body)))

        async def chunks() -> AsyncGenerator[bytes, None]:
            yield body

        parser = _StrictMultiPartParser(request.headers, chunks(), max_files=1, max_fields=MAX_FORM_FIELDS)
        return await parser.parse()
    except _InvalidFormText as exc:
        raise ApiError(400, "invalid_utf8", str(exc)) from None
    except MultiPartException as exc:
        raise ApiError(400, "invalid_form", exc.message) from None


def _check_unicode(field: str, value: str) -> None:
    """A lone surrogate (possible in JSON's \\ud800 escapes) is not text: refuse it here, not in the tokenizer."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            422, "invalid_text", f"{field} contains an unpaired surrogate at character {exc.start}; send valid Unicode"
        ) from None


def _decode_base64(data: str) -> bytes:
    payload = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "invalid_base64", f"image_base64 is not valid base64: {exc}") from None


def _describe_validation(errors: Any) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            parts.append(f"{where}: unknown field (expected {', '.join(TagJSONRequest.model_fields)})")  # from the model: never stale
        elif kind == "missing":
            parts.append(f"{where}: field required")
        else:
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _response(
    outcome: TagOutcome, loaded: Any, caption: str | None, decode_ms: float, total_ms: float, service: TaggingService, offsets: str = "codepoints"
) -> TagResponse:
    post = outcome.post
    table = utf16_offsets(post.text) if offsets == "utf16" else None

    def at(i: int) -> int:
        return table[i] if table is not None else i
    multimodal = service.multimodal
    feats = post.features if multimodal else outcome.features
    image_read = multimodal and loaded is not None and service.reads_images
    notes = []
    if multimodal:
        if loaded is not None and not service.reads_images:
            notes.append("object detection is switched off on this server: the image was not read; the post was tagged with its text and caption only")
        if not image_read and not caption:
            notes.append("no image and no caption: the post was tagged by the text path (r = 0)")
    else:
        if loaded is not None or caption:
            notes.append("this model is text-only: the image and caption are analysed and shown, but the tags come from the text alone")
        if loaded is not None and service.extractor is None:
            notes.append("object detection is switched off on this server")
    if post.windows > 1:
        notes.append(
            f"the post is longer than the encoder's {service.tagger.model.max_subtokens} sub-token input: it was read in "
            f"{post.windows} overlapping windows, each word tagged from the one where it has the most context"
        )
    if post.words_past_limit:
        notes.append(
            f"the last {post.words_past_limit} of {len(post.tokens)} words are past the encoder's "
            f"{service.tagger.model.max_subtokens} sub-token limit and were not tagged (O)"
        )
    objects = []
    words: list[str] = []
    if feats is not None:
        objects = [
            ObjectOut(label=label, score=round(float(score), 4), box=[round(float(v), 4) for v in box])
            for label, score, box in zip(feats.object_labels, feats.object_scores, feats.boxes.tolist(), strict=True)
        ]
        words = list(feats.semantic.words)
    image = None
    if loaded is not None:
        image = ImageOut(width=loaded.original_size[0], height=loaded.original_size[1], format=loaded.format, used_for_tagging=image_read)
    return TagResponse(
        text=post.text,
        words=[WordOut(text=t.text, start=at(t.start), end=at(t.end), tag=tag) for t, tag in zip(post.tokens, post.tags or ["O"] * len(post.tokens), strict=True)],
        entities=[EntityOut(text=e.text, type=e.type, start=at(e.start), end=at(e.end)) for e in post.entities],
        relevance=post.relevance if multimodal else None,
        level_weights=post.level_weights if multimodal else None,
        objects=objects,
        image_words=words,
        image=image,
        notes=notes,
        offsets=offsets,
        windows=post.windows,
        batch_size=outcome.batch_size,
        timings_ms={**outcome.timings_ms, "decode": round(decode_ms, 2), "total": round(total_ms, 2)},
    )
