"""The Ray Serve side of a ``target='ray'`` deployment: what the replicas import.

This module travels to the cluster inside the deployment's package (the zip that becomes
the Serve application's ``working_dir``), next to a copy of the portable serving modules
(:data:`..bundle.PORTABLE`) and the exported model::

    jx_serving/          this module as ray_app.py, and the portable serving modules
    model/               the artifact and its manifest (sha256, input/output spec)
    serve_options.json   how to serve it (batching, threads, body limit)

The Serve config names it ``jx_serving.ray_app:app``. Each replica builds the very ASGI app
a local deployment runs (:func:`.app.create_app`: ``/predict``, the Open Inference Protocol
with binary tensors, the health and metadata routes) and Serve mounts it under the
application's ``route_prefix`` with ``serve.ingress``. It imports only what the portable
modules import, plus Ray Serve, which the cluster has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray import serve

#: the package's root: the application's working_dir as the replica unpacked it
ROOT = Path(__file__).resolve().parent.parent
OPTIONS = "serve_options.json"


def read_options(root: Path = ROOT) -> dict[str, Any]:
    """The serving options recorded in the package (``{}`` when there are none).

    Example::

        >>> read_options(Path("/nonexistent"))
        {}
    """
    try:
        return json.loads((root / OPTIONS).read_text())
    except FileNotFoundError:
        return {}


class RouteRoot:
    """ASGI layer that hands our app the path under the application's route prefix.

    Serve passes the full request path with ``root_path`` set to the route prefix; our
    inference routes match ``/predict`` exactly (no Starlette routing on the hot path), so
    the prefix is taken off here.

    Example::

        >>> RouteRoot(app)  # doctest: +SKIP
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            root = scope.get("root_path") or ""
            path = scope.get("path") or "/"
            if root and path.startswith(root):
                scope = {**scope, "path": path[len(root) :] or "/", "root_path": ""}
        await self.app(scope, receive, send)


def build_app(root: Path = ROOT) -> Any:
    """The ASGI app a replica serves: the model under ``root/model`` behind the same
    routes as a local deployment.

    Example::

        >>> app = build_app(Path("unpacked_package"))  # doctest: +SKIP
    """
    # imported here, in the replica: Serve's build step imports this module only to read
    # the application, and FastAPI's import is a good part of a cold process's second
    from .app import create_app
    from .runtime import Manifest, load_predictor

    options = read_options(root)
    directory = root / "model"
    manifest = Manifest.read(directory)
    device = options.get("device", "cpu")
    predictor = load_predictor(
        directory, trusted_root=root, device=device, threads=options.get("threads")
    )
    app = create_app(
        predictor,
        manifest.spec,
        key_hash=manifest.api_key_sha256,
        max_body_bytes=int(float(options.get("max_body_mb", 16.0)) * 1024 * 1024),
        max_batch_size=int(options.get("max_batch_size", 1)),
        batch_timeout_ms=float(options.get("batch_timeout_ms", 0.0)),
        in_thread=device != "cpu",
    )
    return RouteRoot(app)


def _build() -> Any:
    # a builder function: serve.ingress calls it in each replica, so the model is loaded
    # there and never pickled from the place that builds the application
    return build_app()


@serve.deployment(name="model")
@serve.ingress(_build)
class Model:
    """One replica: the ASGI app :func:`build_app` returns (Serve's wrapper serves it)."""


app = Model.bind()
