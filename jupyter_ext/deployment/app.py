"""The default serving engine: one FastAPI app on uvicorn, one process.

Routes: ``POST /predict`` and the Open Inference Protocol (KServe v2) REST endpoints.
FastAPI routes, documents and answers everything; the two inference routes, which carry
almost every request, are also answered by :class:`HotPath`, a plain ASGI layer in front of
it that reads the body, validates it (:mod:`.protocol`, the code LitServe and bundles use
too), runs the model and writes the response without Starlette's request and response
objects, routing or middleware: on a small model those cost more than the model itself.
JSON is parsed and written by orjson; uvicorn runs on uvloop and httptools.

The model runs inline in the event loop (for the small models served here, a thread hop
costs more than the predict), or, with dynamic batching on, in one worker thread fed by
:class:`.batching.Batcher`.

Health endpoints answer without an API key (container and load-balancer probes have none);
everything else requires it when the server has one. No request body, however malformed,
gets a 5xx: every refusal is a 4xx with ``{"error": ...}`` saying what would be right.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from . import protocol
from .batching import Batcher
from .protocol import ModelSpec, ProtocolError

log = logging.getLogger("jupyter_ext.serving")

DEFAULT_MAX_BODY = 16 * 1024 * 1024
DEFAULT_BODY_TIMEOUT = 30.0
SERVER_VERSION = "1"
_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_JSON = [(b"content-type", b"application/json")]

# (status, body, headers) of a response
Answer = tuple[int, bytes, dict[str, str]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ClientGone(Exception):
    """The client closed the connection before its body arrived: nobody to answer."""


class Inference:
    """What the inference routes do, whichever layer received the request.

    Example::

        >>> inference = Inference(predictor, spec, key_hash=None)  # doctest: +SKIP
        >>> status, body, headers = await inference.predict(headers.get, body)  # doctest: +SKIP
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        spec: ModelSpec,
        *,
        key_hash: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT,
        max_batch_size: int = 1,
        batch_timeout_ms: float = 0.0,
        in_thread: bool = False,
    ) -> None:
        self.spec = spec
        self.key_hash = key_hash
        self.max_body = max_body_bytes
        self.watch = protocol.BodyWatch(body_timeout_s)
        self.predict_fn = predict
        self.batcher = (
            Batcher(predict, max_batch_size, batch_timeout_ms, in_thread=in_thread)
            if max_batch_size > 1
            else None
        )

    def admit(self, header: Callable[[str], str | None], binary: bool) -> None:
        """What can be refused from the headers: key and type (a declared size over the
        limit is refused by :func:`.protocol.read_body`, before it reads a byte)."""
        protocol.check_api_key(header, self.key_hash)
        protocol.check_content_type(header("content-type"), binary)

    async def read(self, chunks: Any, header: Callable[[str], str | None]) -> bytes:
        return await protocol.read_body(
            chunks,
            header("content-length"),
            header("content-encoding"),
            self.max_body,
            self.watch,
        )

    async def run(self, x: np.ndarray) -> np.ndarray:
        try:
            if self.batcher is not None:
                return await self.batcher(x)
            return self.predict_fn(x)
        except Exception as exc:
            log.exception("the model failed on a batch of shape %s", list(x.shape))
            raise ProtocolError(500, f"the model raised {type(exc).__name__}: {exc}") from None

    async def predict(self, header: Callable[[str], str | None], body: bytes) -> Answer:
        x, batched = protocol.parse_predict(body, self.spec)
        content, headers = protocol.encode_predict(await self.run(x), batched)
        return 200, content, headers

    async def infer(self, header: Callable[[str], str | None], body: bytes) -> Answer:
        req = protocol.parse_infer(body, header("inference-header-content-length"), self.spec)
        content, headers = protocol.encode_infer(await self.run(req.array), req, self.spec)
        return 200, content, headers


class HotPath:
    """ASGI layer answering ``POST /predict`` and v2 infer without Starlette's machinery;
    every other request goes on to the FastAPI app.

    Example::

        >>> app = HotPath(fastapi_app, inference)  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """

    def __init__(self, app: FastAPI, inference: Inference) -> None:
        self.app = app
        self.inference = inference

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)  # tests and tools reach the FastAPI app through it

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path == "/predict":
                await self._answer(scope, receive, send, self.inference.predict, None)
                return
            m = _INFER.match(path)
            if m is not None:
                await self._answer(scope, receive, send, self.inference.infer, m)
                return
        await self.app(scope, receive, send)

    async def _answer(
        self,
        scope: dict,
        receive: Any,
        send: Any,
        handler: Callable[..., Awaitable[Answer]],
        infer: re.Match | None,
    ) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        header = headers.get
        try:
            self.inference.admit(header, binary=infer is not None)
            if infer is not None:
                protocol.check_model(self.inference.spec, infer.group(1), infer.group(2))
            body = await self.inference.read(_chunks(receive), header)
            status, content, extra = await handler(header, body)
        except ClientGone:
            log.info("%s %s: the client went away before its body arrived", "POST", scope["path"])
            return
        except ProtocolError as exc:
            if exc.status < 500:
                log.warning("%s POST %s: %s", exc.status, scope["path"], exc.message)
            status, content, extra = exc.status, exc.body(), exc.headers
        media = [] if "Content-Type" in extra else _JSON
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *media,
                    (b"content-length", str(len(content)).encode()),
                    *((k.lower().encode(), v.encode()) for k, v in extra.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})


async def _chunks(receive: Any) -> Any:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


def create_app(predict: Any, spec: ModelSpec, **options: Any) -> HotPath:
    """Build the app serving ``predict`` (numpy batch -> numpy batch) under ``spec``.

    ``options`` are :class:`Inference`'s: ``key_hash``, ``max_body_bytes``,
    ``body_timeout_s`` (how long a body may pause), ``max_batch_size`` > 1 to stack
    concurrent requests into one forward pass (:mod:`.batching`; ``batch_timeout_ms``, and
    ``in_thread`` to run it in a worker thread, for models that release the GIL for long,
    such as on a GPU).

    Example::

        >>> app = create_app(lambda x: x * 2, spec, max_batch_size=16)  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    inference = Inference(predict, spec, **options)
    app = _new_app(spec, inference.key_hash)
    _add_error_handlers(app, spec)
    _add_inference_routes(app, inference)
    _add_health_routes(app)
    _add_metadata_routes(app, spec, inference.key_hash)
    return HotPath(app, inference)


def _new_app(spec: ModelSpec, key_hash: str | None) -> FastAPI:
    # with a key, the API description is not served either: nothing answers a stranger
    # but the health probes
    docs = {} if key_hash is None else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    return FastAPI(
        title=f"{spec.name} (jupyter-ext)",
        description="POST /predict and the Open Inference Protocol (KServe v2) REST API.",
        **docs,
    )


def _add_error_handlers(app: FastAPI, spec: ModelSpec) -> None:
    """Every error answers ``{"error": ...}`` (the v2 protocol's shape), and is logged."""

    @app.exception_handler(ProtocolError)
    async def _protocol_error(request: Request, exc: ProtocolError) -> Response:
        log.warning("%s %s %s: %s", exc.status, request.method, request.url.path, exc.message)
        return Response(
            exc.body(), status_code=exc.status, headers=exc.headers, media_type="application/json"
        )

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = (
                f"no route {request.url.path}; this server answers POST /predict and "
                f"POST /v2/models/{spec.name}/infer"
            )
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        log.warning("%s %s %s: %s", exc.status_code, request.method, request.url.path, message)
        return _error(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error(422, str(exc.errors()))


def _body_doc(example: dict[str, Any]) -> dict[str, Any]:
    # the routes read the raw body (no pydantic model): describe it for the docs page
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
        }
    }


def _add_inference_routes(app: FastAPI, inference: Inference) -> None:
    """``POST /predict`` and the v2 infer endpoints, as FastAPI routes: what the docs show,
    and what answers when the app is mounted without :class:`HotPath` in front."""
    spec = inference.spec
    row = [0.0] * max(1, int(np.prod([d for d in spec.input.shape[1:] if d > 0] or [1])))
    infer_doc = {"inputs": [{**spec.input.to_json(), "shape": [1, len(row)], "data": row}]}

    async def answer(request: Request, handler: Any, binary: bool) -> Response:
        header = request.headers.get
        inference.admit(header, binary)
        try:
            body = await inference.read(request.stream(), header)
        except Exception as exc:  # starlette's ClientDisconnect: nobody to answer
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(400, "the client disconnected before sending the body") from None
        status, content, headers = await handler(header, body)
        media = headers.pop("Content-Type", "application/json")
        return Response(content, status_code=status, headers=headers, media_type=media)

    @app.post("/predict", openapi_extra=_body_doc({"inputs": [row]}))
    async def predict_route(request: Request) -> Response:
        return await answer(request, inference.predict, binary=False)

    @app.post("/v2/models/{name}/infer", openapi_extra=_body_doc(infer_doc))
    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=_body_doc(infer_doc))
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        protocol.check_api_key(request.headers.get, inference.key_hash)
        protocol.check_model(spec, name, version)
        return await answer(request, inference.infer, binary=True)


def _add_health_routes(app: FastAPI) -> None:
    """Liveness and readiness: open to all (probes carry no key)."""

    @app.get("/v2/health/live")
    async def live() -> Response:
        return JSONResponse({"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        return JSONResponse({"ready": True})


def _add_metadata_routes(app: FastAPI, spec: ModelSpec, key_hash: str | None) -> None:
    """Server and model metadata, and model readiness (behind the key, when there is one)."""

    @app.get("/v2")
    async def server_metadata(request: Request) -> Response:
        protocol.check_api_key(request.headers.get, key_hash)
        return JSONResponse(protocol.server_metadata(SERVER_VERSION))

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(request: Request, name: str, version: str | None = None) -> Response:
        protocol.check_api_key(request.headers.get, key_hash)
        protocol.check_model(spec, name, version)
        return JSONResponse(spec.metadata())

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(request: Request, name: str, version: str | None = None) -> Response:
        protocol.check_api_key(request.headers.get, key_hash)
        protocol.check_model(spec, name, version)
        return JSONResponse({"name": spec.name, "ready": True})
