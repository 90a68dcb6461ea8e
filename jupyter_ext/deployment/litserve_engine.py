"""The opt-in LitServe engine: the same protocol, with LitServe's batching and workers.

LitServe starts its inference workers with multiprocessing's ``spawn``, which pickles the
LitAPI by reference: its class must live in an importable module such as this one, never in
``__main__``. It also leaves children serving when only its parent gets SIGTERM, so the
launcher stops it by process group.

LitServe parses every POST body as JSON in its API server and answers errors with
``{"detail": ...}``. A pure ASGI gate in front of it therefore does what the protocol
requires first: the API key, the body limit, validation with a 4xx that says what was
expected, the v2 GET endpoints, and turning a v2 infer request (JSON or binary tensors)
into an internal ``/predict`` request. The worker then only converts, batches and predicts.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import litserve as ls
import numpy as np
from starlette.exceptions import HTTPException
from starlette.responses import Response

from . import protocol
from .protocol import InferRequest, ModelSpec, ProtocolError
from .runtime import Manifest, load_predictor

log = logging.getLogger("jupyter_ext.serving")

_V2_MODEL = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?(/ready|/infer)?$")
_OPEN = ("/v2/health/live", "/v2/health/ready", "/health")


class ProtocolLitAPI(ls.LitAPI):
    """Predicts on validated requests; answers ``/predict`` and v2 infer shaped responses."""

    def __init__(
        self,
        directory: str,
        spec: ModelSpec,
        trusted_root: str | None,
        threads: int | None = None,
        max_batch_size: int = 1,
        batch_timeout: float = 0.0,
    ) -> None:
        with warnings.catch_warnings():
            # it warns that batch/unbatch exist while max_batch_size is 1: they are for > 1
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(
                max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict"
            )
        self.directory = directory
        self.model_spec = spec  # not .spec: LitAPI uses that name for its LitSpec
        self.trusted_root = trusted_root
        self.threads = threads

    def setup(self, device: str) -> None:
        self.predictor = load_predictor(
            self.directory, trusted_root=self.trusted_root, device=device, threads=self.threads
        )

    def decode_request(self, request, context: dict) -> np.ndarray:
        # `request` stays unannotated: LitServe reads the annotation to pick how to parse the
        # body (none: JSON). The gate validated it; a single example gets its batch dim here.
        x = np.asarray(request["inputs"], dtype=self.model_spec.input.dtype)
        oip = request.get("oip")
        context["oip"] = oip
        context["batched"] = x.ndim == len(self.model_spec.input.shape)
        if not context["batched"]:
            x = x[None]
        context["rows"] = len(x)
        return x

    def batch(self, inputs: list[np.ndarray], context: list[dict]) -> np.ndarray:
        # requests carry whole batches of any size, so concatenate rather than stack
        return np.concatenate(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predictor(x)

    def unbatch(self, output: np.ndarray, context: list[dict]) -> list[np.ndarray]:
        return np.split(output, np.cumsum([c["rows"] for c in context])[:-1])

    def encode_response(self, output: np.ndarray, context: dict) -> Response:
        oip = context.get("oip")
        if oip is None:
            body, headers = protocol.encode_predict(output, context["batched"])
            return Response(body, headers=headers, media_type="application/json")
        req = InferRequest(output, oip.get("id"), bool(oip.get("binary")))
        body, headers = protocol.encode_infer(output, req, self.model_spec)
        media = headers.pop("Content-Type")
        return Response(body, headers=headers, media_type=media)


class ProtocolGate:
    """ASGI middleware that enforces the protocol before LitServe sees a request."""

    def __init__(
        self,
        app: Any,
        spec: ModelSpec,
        key_hash: str | None,
        max_body_bytes: int,
        body_timeout_s: float = 30.0,
    ) -> None:
        self.app = app
        self.spec = spec
        self.key_hash = key_hash
        self.max_body = max_body_bytes
        self.watch = protocol.BodyWatch(body_timeout_s)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self._handle(scope, receive, send)
        except ProtocolError as exc:
            log.warning("%s %s %s: %s", exc.status, scope["method"], scope["path"], exc.message)
            headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
            await _send(send, exc.status, exc.body(), headers=headers)

    async def _handle(self, scope: dict, receive: Any, send: Any) -> None:
        path, method = scope["path"], scope["method"]
        if path in _OPEN:
            if path == "/health":
                await self.app(scope, receive, send)
            else:
                key = "live" if path.endswith("live") else "ready"
                await _send_json(send, {key: True})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        protocol.check_api_key(headers.get, self.key_hash)
        m = _V2_MODEL.match(path)
        if path == "/v2" and method == "GET":
            await _send_json(send, protocol.server_metadata("1"))
        elif m and method == "GET" and m.group(3) != "/infer":
            protocol.check_model(self.spec, m.group(1), m.group(2))
            doc = {"name": self.spec.name, "ready": True} if m.group(3) else self.spec.metadata()
            await _send_json(send, doc)
        elif path == "/predict" and method == "POST":
            protocol.check_content_type(headers.get("content-type"), binary=False)
            body = await self._body(receive, headers)
            protocol.parse_predict(body, self.spec)  # validation only; the worker decodes
            await self.app(_rewrite(scope, "/predict", body), _replay(body, receive), send)
        elif m and m.group(3) == "/infer" and method == "POST":
            protocol.check_model(self.spec, m.group(1), m.group(2))
            protocol.check_content_type(headers.get("content-type"), binary=True)
            body = await self._body(receive, headers)
            req = protocol.parse_infer(
                body, headers.get("inference-header-content-length"), self.spec
            )
            inner = protocol.encode_json(
                {"inputs": req.array, "oip": {"id": req.id, "binary": req.binary_output}}
            )
            await self.app(_rewrite(scope, "/predict", inner), _replay(inner, receive), send)
        else:
            await self.app(scope, receive, send)

    async def _body(self, receive: Any, headers: dict[str, str]) -> bytes:
        async def chunks() -> Any:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ProtocolError(400, "the client disconnected before sending the body")
                yield message.get("body", b"")
                if not message.get("more_body"):
                    return

        return await protocol.read_body(
            chunks(),
            headers.get("content-length"),
            headers.get("content-encoding"),
            self.max_body,
            self.watch,
        )


def _rewrite(scope: dict, path: str, body: bytes) -> dict:
    headers = [
        (k, v)
        for k, v in scope["headers"]
        if k.lower() not in (b"content-length", b"content-encoding", b"content-type")
    ]
    headers += [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
    ]
    return {**scope, "path": path, "raw_path": path.encode(), "headers": headers}


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Any, doc: dict) -> None:
    await _send(send, 200, json.dumps(doc).encode())


async def _http_error(request: Any, exc: HTTPException) -> Response:
    return Response(
        json.dumps({"error": str(exc.detail)}).encode(),
        status_code=exc.status_code,
        media_type="application/json",
    )


def serve(
    directory: Path,
    *,
    host: str,
    port: int,
    trusted_root: Any,
    key_hash: str | None,
    max_body_bytes: int,
    workers: int = 1,
    max_batch_size: int = 1,
    batch_timeout: float = 0.0,
    threads: int | None = None,
    accelerator: str = "cpu",
    log_level: str = "warning",
    body_timeout_s: float = 30.0,
) -> None:
    """Serve the artifact in ``directory`` with LitServe until SIGTERM (blocks).

    Example::

        >>> serve(Path("ws/deployments/mlp-1a2b"), host="127.0.0.1", port=8080,
        ...       trusted_root="ws", key_hash=None, max_body_bytes=1 << 24)  # doctest: +SKIP
    """
    manifest = Manifest.read(directory)
    api = ProtocolLitAPI(
        str(directory),
        manifest.spec,
        None if trusted_root is None else str(trusted_root),
        threads=threads,
        max_batch_size=max_batch_size,
        batch_timeout=batch_timeout,
    )
    server = ls.LitServer(
        api,
        accelerator=accelerator,
        workers_per_device=workers,
        middlewares=[
            (
                ProtocolGate,
                {
                    "spec": manifest.spec,
                    "key_hash": key_hash,
                    "max_body_bytes": max_body_bytes,
                    "body_timeout_s": body_timeout_s,
                },
            )
        ],
    )
    server.app.add_exception_handler(HTTPException, _http_error)
    print(
        f"serving {manifest.spec.name!r} ({manifest.format}, litserve) on http://{host}:{port}",
        flush=True,
    )
    server.run(host=host, port=port, log_level=log_level, generate_client_file=False)
