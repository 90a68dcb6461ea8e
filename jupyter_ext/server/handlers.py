"""REST handlers under ``{base_url}/jupyter-ext/api/``: thin over :mod:`.views`.

Every verb is ``@web.authenticated`` (then ``@authorized``: GET reads, POST/DELETE write
the ``jupyter_ext`` resource), answers JSON, and does its store, psutil and NVML reads
(and the JSON encoding) in a worker thread, never on the server's event loop. Errors are
``{"error": "...", "message": "..."}`` (the same text twice: ``message`` is what
JupyterLab's ``ServerConnection.ResponseError`` shows) with the right status: 400 names the
bad query parameter and what it should be, 404 an unknown run, deployment or endpoint,
409 a stop of a run that has already ended (with its ``status``).

============================  ==========================================================
``GET runs``                  ``?experiment=E&status=S[,S]&since=T&before=ID&limit=N``
``GET runs/{id}``             one run in detail
``GET runs/{id}/metrics``     ``?keys=a,b&after=CHUNK&max_points=N``
``GET runs/{id}/logs``        ``?tail=N``
``POST runs/{id}/stop``       graceful stop; 202
``GET deployments``           every deployment
``DELETE deployments/{name}`` stop it
``GET accelerators``          devices with live memory and utilisation
``GET info``                  version and workspace
============================  ==========================================================
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httputil import responses

from .._version import __version__
from ..config import get_config
from ..store import STATUSES
from .options import API_PREFIX, JupyterExtServer
from .views import (
    ApiError,
    jsonable,
    list_accelerators,
    list_deployments,
    list_runs,
    run_detail,
    run_logs,
    run_metrics,
    stop_deployment,
    stop_run,
)

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MIN_POINTS = 4  # what jupyter_ext.downsample.minmax needs
# Parameters jupyter_server itself reads on any request; never "unknown".
_SERVER_PARAMS = frozenset({"token", "_xsrf", "no_track_activity"})


def _dump(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Run ``fn`` and encode its answer: both in the worker thread (a metrics answer can
    hold tens of thousands of floats)."""
    return json.dumps(jsonable(fn(*args, **kwargs)), allow_nan=False)


def _info() -> dict[str, Any]:
    return {"version": __version__, "home": str(get_config().home_path), "now": time.time()}


class ToolkitHandler(APIHandler):
    """Base of the toolkit's handlers: JSON errors, query checks, work off the loop.

    Example (a subclass)::

        class Ping(ToolkitHandler):
            @web.authenticated
            @authorized
            async def get(self) -> None:
                await self.answer(lambda: {"pong": True})
    """

    auth_resource = "jupyter_ext"
    params: tuple[str, ...] = ()  # the query parameters this endpoint reads

    @property
    def extension_options(self) -> JupyterExtServer:
        # not `options`: that is the OPTIONS verb (CORS preflight), inherited from APIHandler
        return self.settings["jupyter_ext_server"]

    async def answer(
        self, fn: Callable[..., Any], *args: Any, http_status: int = 200, **kwargs: Any
    ) -> None:
        """Check the query, run ``fn(*args, **kwargs)`` in a thread, answer its JSON
        with ``http_status``."""
        # A bare number is the cache-buster JupyterLab's ServerConnection adds to GETs.
        unknown = sorted(
            k
            for k in set(self.request.query_arguments) - set(self.params) - _SERVER_PARAMS
            if not k.isdigit()
        )
        if unknown:
            known = ", ".join(self.params) or "none"
            raise ApiError(
                400,
                f"unknown query parameter {', '.join(unknown)}; this endpoint takes: {known}",
                parameter=unknown[0],
            )
        text = await asyncio.to_thread(_dump, fn, args, kwargs)
        self.set_status(http_status)
        self.finish(text)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as ``{"error": ..., "message": ...}`` plus the error's own fields."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        extra: dict[str, Any] = {}
        if isinstance(exc, ApiError):
            message, extra = exc.message, exc.extra
        elif isinstance(exc, web.HTTPError):
            # log_message % args, as tornado logs it (get_message() is only in newer tornado)
            text = exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message
            message = text or exc.reason or responses.get(status_code, "error")
        elif exc is not None:
            message = f"internal error: {type(exc).__name__}: {exc}"
        else:
            message = responses.get(status_code, "error")
        self.finish(json.dumps(jsonable({"error": message, "message": message, **extra})))

    # -- query parameters (parsed on the loop: cheap, and a 400 needs no thread) ---------
    def _arg(self, name: str) -> str | None:
        raw = self.get_query_argument(name, None)
        return None if raw is None or raw.strip() == "" else raw.strip()

    def int_arg(self, name: str, default: int | None, low: int, high: int | None = None,
                what: str = "") -> int | None:  # fmt: skip
        """The integer query parameter ``name`` in [low, high] (``default`` when absent),
        else a 400 that names it and the range.

        Example::

            limit = self.int_arg("limit", 200, 1, 1000)  # ?limit=0 -> 400 "limit must be ..."
        """
        raw = self._arg(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else f">= {low}"
            raise ApiError(
                400, f"{name} must be an integer {span}{what}, got {raw!r}", parameter=name
            )
        return value


class InfoHandler(ToolkitHandler):
    """``GET info``: ``{version, home, now}``: the extension is there, and which workspace.

    Example::

        GET /jupyter-ext/api/info -> {"version": "0.1.0", "home": "/home/me/...", "now": ...}
    """

    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(_info)


class RunsHandler(ToolkitHandler):
    """``GET runs``: ``{runs: [item], now, next}``, newest first.

    Example::

        GET /jupyter-ext/api/runs?status=running,queued&limit=50
    """

    params = ("experiment", "status", "since", "before", "limit")

    @web.authenticated
    @authorized
    async def get(self) -> None:
        status = None
        raw_status = self._arg("status")
        if raw_status is not None:
            status = [s.strip() for s in raw_status.split(",") if s.strip()]
            bad = [s for s in status if s not in STATUSES]
            if bad or not status:
                raise ApiError(
                    400,
                    f"status must be one of {', '.join(STATUSES)} (comma-separated for "
                    f"several), got {raw_status!r}",
                    parameter="status",
                )
        since = None
        raw_since = self._arg("since")
        if raw_since is not None:
            try:
                since = float(raw_since)
            except ValueError:
                since = math.nan
            if not math.isfinite(since):
                raise ApiError(
                    400,
                    f"since must be a Unix time in seconds (the `now` of an earlier answer), "
                    f"got {raw_since!r}",
                    parameter="since",
                )
        limit = self.int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        await self.answer(
            list_runs,
            experiment=self._arg("experiment"),
            status=status,
            since=since,
            before=self._arg("before"),
            limit=limit,
            since_overlap_s=self.extension_options.since_overlap_s,
        )


class RunHandler(ToolkitHandler):
    """``GET runs/{id}``: the listed item plus checkpoints, full error and metric keys.

    Example::

        GET /jupyter-ext/api/runs/20261202-071503-482-k7q2m9xa
    """

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        await self.answer(run_detail, run_id)


class MetricsHandler(ToolkitHandler):
    """``GET runs/{id}/metrics``: new points per key, downsampled; ``last`` for next time.

    Non-finite values (NaN, +-inf) come as ``null`` so the answer stays valid JSON (and
    are dropped when a key has to be downsampled); ``nonfinite`` counts them per key.

    Example::

        GET /jupyter-ext/api/runs/ID/metrics?keys=train_loss,val_loss&after=41&max_points=500
    """

    params = ("keys", "after", "max_points")

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        keys = None
        if "keys" in self.request.query_arguments:
            keys = [
                k.strip()
                for raw in self.get_query_arguments("keys")
                for k in raw.split(",")
                if k.strip()
            ]
            if not keys:
                raise ApiError(
                    400,
                    "keys must be metric keys, comma-separated (e.g. keys=train_loss,val_loss); "
                    "leave it out for every key",
                    parameter="keys",
                )
        after = self.int_arg("after", 0, 0, what=" (the `last` of an earlier answer)")
        max_points = self.int_arg("max_points", None, MIN_POINTS)
        await self.answer(run_metrics, run_id, keys, after, max_points)


class LogsHandler(ToolkitHandler):
    """``GET runs/{id}/logs``: ``{id, status, tail, text}``, the worker's last lines.

    Example::

        GET /jupyter-ext/api/runs/ID/logs?tail=50
    """

    params = ("tail",)

    @web.authenticated
    @authorized
    async def get(self, run_id: str) -> None:
        tail = self.int_arg("tail", 100, 0, 100_000)
        await self.answer(run_logs, run_id, tail)


class StopHandler(ToolkitHandler):
    """``POST runs/{id}/stop``: graceful stop requested, 202 ``{id, name, status,
    stop_requested}``; a run that has already ended: 409 with its ``status``.

    Example::

        POST /jupyter-ext/api/runs/ID/stop
    """

    @web.authenticated
    @authorized
    async def post(self, run_id: str) -> None:
        await self.answer(stop_run, run_id, http_status=202)


class DeploymentsHandler(ToolkitHandler):
    """``GET deployments``: ``{deployments: [item]}``, oldest first.

    Example::

        GET /jupyter-ext/api/deployments
    """

    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(list_deployments)


class DeploymentHandler(ToolkitHandler):
    """``DELETE deployments/{name}``: stop it; answers the deployment as it is afterwards.

    Example::

        DELETE /jupyter-ext/api/deployments/mlp
    """

    @web.authenticated
    @authorized
    async def delete(self, name: str) -> None:
        await self.answer(stop_deployment, name)


class AcceleratorsHandler(ToolkitHandler):
    """``GET accelerators``: ``{accelerators: [row]}``, the rows of
    ``jupyter_ext.accelerators()``.

    Example::

        GET /jupyter-ext/api/accelerators
    """

    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self.answer(list_accelerators)


class NotFoundHandler(ToolkitHandler):
    """Anything else under the API prefix: a JSON 404 naming the endpoints there are.

    Example::

        GET /jupyter-ext/api/nope -> 404 {"error": "no endpoint GET nope; ..."}
    """

    def _missing(self, path: str) -> None:
        raise ApiError(
            404,
            f"no endpoint {self.request.method} {path}; there are: {', '.join(ENDPOINTS)}",
        )

    @web.authenticated
    async def get(self, path: str) -> None:
        self._missing(path)

    @web.authenticated
    async def post(self, path: str) -> None:
        self._missing(path)

    @web.authenticated
    async def put(self, path: str) -> None:
        self._missing(path)

    @web.authenticated
    async def patch(self, path: str) -> None:
        self._missing(path)

    @web.authenticated
    async def delete(self, path: str) -> None:
        self._missing(path)


ENDPOINTS = (
    "GET runs",
    "GET runs/{id}",
    "GET runs/{id}/metrics",
    "GET runs/{id}/logs",
    "POST runs/{id}/stop",
    "GET deployments",
    "DELETE deployments/{name}",
    "GET accelerators",
    "GET info",
)


def routes(base_url: str) -> list[tuple[str, type[ToolkitHandler]]]:
    """The URL patterns of the API under ``base_url``.

    Example::

        >>> routes("/")[1]
        ('/jupyter-ext/api/runs', <class 'jupyter_ext.server.handlers.RunsHandler'>)
    """

    def url(*parts: str) -> str:
        return url_path_join(base_url, API_PREFIX, *parts)

    run = r"(?P<run_id>[^/]+)"
    return [
        (url("info"), InfoHandler),
        (url("runs"), RunsHandler),
        (url("runs", run), RunHandler),
        (url("runs", run, "metrics"), MetricsHandler),
        (url("runs", run, "logs"), LogsHandler),
        (url("runs", run, "stop"), StopHandler),
        (url("deployments"), DeploymentsHandler),
        (url("deployments", r"(?P<name>[^/]+)"), DeploymentHandler),
        (url("accelerators"), AcceleratorsHandler),
        (url(r"(?P<path>.*)"), NotFoundHandler),  # last: only what nothing above matched
    ]


def setup_handlers(web_app: web.Application, options: JupyterExtServer) -> None:
    """Register the API on the server's tornado application.

    Example::

        >>> setup_handlers(serverapp.web_app, JupyterExtServer(parent=serverapp))  # doctest: +SKIP
    """
    web_app.settings["jupyter_ext_server"] = options
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
