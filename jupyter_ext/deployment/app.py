"""The default serving engine: one FastAPI app on uvicorn, one process.

Routes: ``POST /predict`` and the Open Inference Protocol (KServe v2) REST endpoints. The
handlers read the raw body and hand it to :mod:`.protocol` (not to FastAPI's body models:
the protocol validates with messages that say what was expected, in ``{"error": ...}``,
and it is the same code LitServe and bundles use). The model runs inline in the ``async``
handler: for the small models this serves, a thread hop costs more than the predict itself.

Health endpoints answer without an API key (container and load-balancer probes have none);
everything else requires it when the server has one.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from . import protocol
from .protocol import ModelSpec, ProtocolError

log = logging.getLogger("jupyter_ext.serving")

DEFAULT_MAX_BODY = 16 * 1024 * 1024
SERVER_VERSION = "1"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(
    predict: Any,
    spec: ModelSpec,
    *,
    key_hash: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
) -> FastAPI:
    """Build the app serving ``predict`` (numpy batch -> numpy batch) under ``spec``.

    Example::

        >>> app = create_app(lambda x: x * 2, spec)  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8080)  # doctest: +SKIP
    """
    app = _new_app(spec, key_hash)
    _add_error_handlers(app, spec)
    # the hot routes first: a request is matched against the routes in order
    _add_inference_routes(app, predict, spec, key_hash, max_body_bytes)
    _add_health_routes(app)
    _add_metadata_routes(app, spec, key_hash)
    return app


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


def _add_inference_routes(
    app: FastAPI, predict: Any, spec: ModelSpec, key_hash: str | None, max_body_bytes: int
) -> None:
    """``POST /predict`` and the v2 infer endpoints: authenticate, read, validate, run."""

    async def body(request: Request) -> bytes:
        # not FastAPI's max_body_size: past the limit it answers 413 in plain text, and
        # clients of this protocol read {"error": ...}
        headers = request.headers
        return await protocol.read_body(
            request.stream(),
            headers.get("content-length"),
            headers.get("content-encoding"),
            max_body_bytes,
        )

    def run(x: Any) -> Any:
        try:
            return predict(x)
        except Exception as exc:
            log.exception("the model failed on a batch of shape %s", list(x.shape))
            raise ProtocolError(500, f"the model raised {type(exc).__name__}: {exc}") from None

    @app.post("/predict")
    async def predict_route(request: Request) -> Response:
        protocol.check_api_key(request.headers.get, key_hash)
        x, batched = protocol.parse_predict(await body(request), spec)
        return Response(protocol.encode_predict(run(x), batched), media_type="application/json")

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        protocol.check_api_key(request.headers.get, key_hash)
        protocol.check_model(spec, name, version)
        req = protocol.parse_infer(
            await body(request), request.headers.get("inference-header-content-length"), spec
        )
        content, headers = protocol.encode_infer(run(req.array), req, spec)
        media = headers.pop("Content-Type")
        return Response(content, headers=headers, media_type=media)


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
