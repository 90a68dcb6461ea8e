"""The OpenAI-compatible app of a text deployment, and its serving process.

Routes (under ``/v1``, so ``openai.OpenAI(base_url=url + "/v1")`` works unchanged):
``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``; plus the
health routes every deployment answers without a key (``/v2/health/live``,
``/v2/health/ready``), which the deploying kernel polls.

Every refusal is OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}``
with a 4xx: a body that is not JSON, a wrong type, an unknown model (404), a missing or
wrong key (401, as OpenAI answers both), a prompt past the model's context (400
``context_length_exceeded``). The key is sent as ``Authorization: Bearer KEY`` (what the
openai client does) or ``X-API-Key``.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from ..protocol import API_KEY_HEADER, hash_key
from .engine import Piece, TextEngine
from .schemas import GenRequest, OpenAIError, parse_request

log = logging.getLogger("jupyter_ext.serving.textgen")
DEFAULT_MAX_BODY = 16 * 1024 * 1024


def _error_response(exc: OpenAIError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def check_key(request: Request, key_hash: str | None) -> None:
    """Refuse a request without the deployment's key (401, OpenAI's ``invalid_api_key``).

    Example::

        >>> check_key(request, hash_key("s3cret"))  # doctest: +SKIP
    """
    if key_hash is None:
        return
    key = request.headers.get(API_KEY_HEADER)
    auth = request.headers.get("authorization") or ""
    if key is None and auth[:7].lower() == "bearer ":
        key = auth[7:].strip()
    if not key or not hmac.compare_digest(hash_key(key), key_hash):
        what = "is missing" if not key else "is not valid for this server"
        raise OpenAIError(
            401,
            f"the API key {what}: send it as Authorization: Bearer KEY "
            "(openai.OpenAI(api_key=KEY))",
            type="invalid_request_error",
            code="invalid_api_key",
        )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise OpenAIError(413, f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise OpenAIError(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _usage(last: Piece) -> dict[str, int]:
    return {
        "prompt_tokens": last.prompt_tokens,
        "completion_tokens": last.completion_tokens,
        "total_tokens": last.prompt_tokens + last.completion_tokens,
    }


class _Shapes:
    """OpenAI's response and chunk objects for one request."""

    def __init__(self, req: GenRequest) -> None:
        self.req = req
        self.chat = req.kind == "chat"
        prefix = "chatcmpl" if self.chat else "cmpl"
        self.id = f"{prefix}-{secrets.token_hex(12)}"
        self.created = int(time.time())

    def whole(self, text: str, last: Piece) -> dict[str, Any]:
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": last.finish_reason,
                "logprobs": None,
            }
            obj = "chat.completion"
        else:
            choice = {
                "index": 0,
                "text": text,
                "finish_reason": last.finish_reason,
                "logprobs": None,
            }
            obj = "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.req.model,
            "choices": [choice],
            "usage": _usage(last),
        }

    def chunk(self, text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
            if text:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            obj = "chat.completion.chunk"
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
            obj = "text_completion"
        out = {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.req.model,
            "choices": [choice],
        }
        if self.req.include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, last: Piece) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {
            "id": self.id,
            "object": obj,
            "created": self.created,
            "model": self.req.model,
            "choices": [],
            "usage": _usage(last),
        }


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def create_openai_app(
    engine: TextEngine, *, key_hash: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY
) -> FastAPI:
    """The app serving ``engine`` under the OpenAI routes.

    Example::

        >>> app = create_openai_app(engine, key_hash=hash_key("s3cret"))  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    docs = {} if key_hash is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(title="jupyter-ext text generation (OpenAI API)", **docs)
    names = list(engine.names)

    @app.exception_handler(OpenAIError)
    async def _openai_error(request: Request, exc: OpenAIError) -> Response:
        log.warning("%s %s %s: %s", exc.status, request.method, request.url.path, exc.message)
        return _error_response(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = (
                f"no route {request.url.path}; this server answers GET /v1/models, "
                "POST /v1/chat/completions and POST /v1/completions"
            )
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return _error_response(OpenAIError(exc.status_code, message))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error_response(
            OpenAIError(500, f"the server failed: {type(exc).__name__}: {exc}", type="server_error")
        )

    @app.get("/v2/health/live")
    async def live() -> Response:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return JSONResponse({"ready": True})

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        check_key(request, key_hash)
        created = int(time.time())
        data = [
            {"id": n, "object": "model", "created": created, "owned_by": "jupyter-ext"}
            for n in names
        ]
        return JSONResponse({"object": "list", "data": data})

    @app.get("/v1/models/{name}")
    async def model(request: Request, name: str) -> Response:
        check_key(request, key_hash)
        _check_model(name)
        return JSONResponse(
            {"id": name, "object": "model", "created": int(time.time()), "owned_by": "jupyter-ext"}
        )

    def _check_model(name: str) -> None:
        if name not in engine.names:
            raise OpenAIError(
                404,
                f"The model '{name}' does not exist; this server serves {', '.join(names)}",
                param="model",
                code="model_not_found",
            )

    async def _complete(request: Request, kind: str) -> Response:
        check_key(request, key_hash)
        req = parse_request(await _read_body(request, max_body_bytes), kind)
        _check_model(req.model)
        ids = engine.encode(req)
        chat = kind == "chat"
        budget = engine.budget(
            len(ids), req.max_tokens, "max_completion_tokens" if chat else "max_tokens",
            "messages" if chat else "prompt",
        )  # fmt: skip
        shapes = _Shapes(req)
        if req.stream:
            return StreamingResponse(
                _stream(engine, req, ids, budget, shapes),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        texts = []
        async for piece in engine.generate(req, ids, budget):
            texts.append(piece.text)
            last = piece
        return JSONResponse(shapes.whole("".join(texts), last))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await _complete(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _complete(request, "completion")

    return app


async def _stream(
    engine: TextEngine, req: GenRequest, ids: list[int], budget: int, shapes: _Shapes
) -> AsyncIterator[bytes]:
    """Server-sent events in OpenAI's chunk shape, ending ``data: [DONE]``. A failure
    after the first byte cannot change the status any more: it is sent as an error event."""
    first = True
    try:
        if shapes.chat:
            yield _sse(shapes.chunk(None, None, first=True))
            first = False
        async for piece in engine.generate(req, ids, budget):
            if piece.finish_reason is None:
                yield _sse(shapes.chunk(piece.text, None, first=first))
                first = False
                continue
            if piece.text:
                yield _sse(shapes.chunk(piece.text, None, first=first))
            yield _sse(shapes.chunk(None, piece.finish_reason))
            if req.include_usage:
                yield _sse(shapes.usage_chunk(piece))
    except Exception as exc:
        log.exception("streaming %s failed", req.model)
        err = OpenAIError(500, f"generation failed: {exc}", type="server_error")
        yield _sse(err.body())
    yield b"data: [DONE]\n\n"


def serve(
    directory: str,
    *,
    host: str,
    port: int | None,
    fd: int | None,
    key_hash: str | None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    log_level: str = "warning",
) -> None:
    """Load the text deployment in ``directory`` and serve it until SIGTERM/SIGINT
    (called by ``python -m jupyter_ext.deployment.server DIR`` when DIR holds
    ``textgen.json``).

    Example::

        >>> serve("ws/deployments/qa-1a2b", host="127.0.0.1", port=8000, fd=None,
        ...       key_hash=None)  # doctest: +SKIP
    """
    import socket
    from pathlib import Path

    import uvicorn

    from .engine import TextSpec

    spec = TextSpec.read(Path(directory))
    t0 = time.perf_counter()
    if spec.engine == "vllm":
        from .vllm_engine import VllmEngine

        engine: TextEngine = VllmEngine.load(spec)
    else:
        engine = TextEngine.load(spec)
    engine.start()
    app = create_openai_app(engine, key_hash=key_hash, max_body_bytes=max_body_bytes)
    config = uvicorn.Config(
        app, host=host, port=port or 0, log_level=log_level, access_log=False, lifespan="off",
        timeout_graceful_shutdown=3, loop="auto", http="auto",
    )  # fmt: skip
    server = uvicorn.Server(config)
    sockets = None
    where = f"{host}:{port}"
    if fd is not None:
        sock = socket.socket(fileno=fd)  # handed over by the deploying kernel
        sockets = [sock]
        host_, port_ = sock.getsockname()[:2]
        where = f"{host_}:{port_}"
    print(
        f"serving {', '.join(engine.names)} ({spec.engine}, {engine.device}) on http://{where}/v1; "
        f"loaded in {time.perf_counter() - t0:.2f} s",
        flush=True,
    )
    try:
        server.run(sockets=sockets)
    finally:
        engine.close()
