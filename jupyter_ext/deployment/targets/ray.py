"""Target ``ray``: one Ray Serve application per deployment, on a Ray cluster.

The notebook drives the cluster over its dashboard's HTTP API only (no Ray Client, no
shared filesystem):

1. the exported model, the portable serving modules (:data:`..bundle.PORTABLE`) and the
   Serve entry module (:mod:`..ray_app`) are zipped and uploaded to the dashboard's package
   store (``PUT /api/packages/gcs/_ray_pkg_<hash>.zip``, what the Jobs API uses for a
   ``working_dir``); a package already there (the same weights) is not sent again;
2. the Serve config is read (``GET /api/serve/applications/``), our application (named
   after the deployment, ``route_prefix=/<name>``, ``working_dir`` the package) put in
   it, and the whole config written back (``PUT``). ``PUT`` replaces the application
   list, so every other application is sent back exactly as Ray reported it; the
   Serve-wide ``DELETE`` (which shuts Serve down for everyone) is never called;
3. once Ray says the application is ``RUNNING`` with the new config, the example goes
   through Serve's HTTP proxy and must match the in-kernel output.

Replicas, Ray's autoscaling, rolling updates on a redeploy and the restart of a dead
replica are Ray's. The record keeps the dashboard address and the application name, so
any kernel (a restarted one too) finds, lists, scales and stops the deployment; its
live state comes from the Serve REST API on every read.

Every dashboard request carries ``Authorization: Bearer TOKEN`` when the kernel's
environment has Ray's token mode on (``RAY_AUTH_MODE=token``; the token from
``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import secrets
import threading
import time
import urllib.parse
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...cluster.address import ClusterAddress, ClusterUnreachable, parse_address
from ..export import DeployError, within
from ..server import is_loopback
from . import (
    DeployJob,
    DeployOutcome,
    DeployTarget,
    Outcome,
    ServeOptions,
    get_target,
    record_info,
    step_timings,
)

if TYPE_CHECKING:
    from ...store import DeploymentRecord, Store
    from ..export import ExportResult

IMPORT_PATH = "jx_serving.ray_app:app"
DEPLOYMENT = "model"  # the one Serve deployment in each application (ray_app.Model)
SERVE_PORT = 8000
#: the dashboard refuses request bodies over this (ray_constants.DASHBOARD_CLIENT_MAX_SIZE)
UPLOAD_LIMIT = 100 * 1024 * 1024
APPS = "/api/serve/applications/"
LIVE = ("running", "unhealthy")
HEALTH_CHECK_S = 2.0
#: in Ray's message when replicas wait for resources ("... have taken more than 30s to be
#: scheduled ... Resources required for each replica: ..., total resources available: ...")
STUCK = "to be scheduled"
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed: the same files give the same package hash


@dataclass(frozen=True)
class RayServeOptions(ServeOptions):
    """:class:`ServeOptions` plus what a Ray Serve deployment needs: the ``cluster``
    (None: the selected one, ``%cluster``), ``replicas`` or ``autoscaling`` (Ray's
    ``autoscaling_config``: ``{"min_replicas": 1, "max_replicas": 4, ...}``) and
    ``num_cpus`` per replica (None: Serve's default, 1). ``port`` is the port of Serve's
    HTTP proxy when this deployment starts Serve on the cluster (default 8000).

    Example::

        >>> RayServeOptions(replicas=2).replicas
        2
    """

    cluster: ClusterAddress | None = None
    replicas: int = 1
    autoscaling: dict[str, Any] | None = None
    num_cpus: float | None = None


# -- the dashboard's HTTP API ----------------------------------------------------------
def auth_headers() -> dict[str, str]:
    """``Authorization: Bearer TOKEN`` when Ray's token mode is on in this environment,
    with the token from where Ray looks for it; else nothing. Read on every call, so a
    token set after import is used.

    Example::

        >>> os.environ.get("RAY_AUTH_MODE") == "token" or auth_headers() == {}
        True
    """
    if os.environ.get("RAY_AUTH_MODE", "").strip().lower() != "token":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
        try:
            token = Path(path).read_text().strip()
        except OSError:
            token = ""
    return {"Authorization": f"Bearer {token}"} if token else {}


class ServeApi:
    """The Serve REST API and the package store of one cluster's dashboard.

    Example::

        >>> api = ServeApi(parse_address("http://127.0.0.1:8265"))  # doctest: +SKIP
        >>> sorted(api.state()["applications"])  # doctest: +SKIP
        ['mlp']
    """

    def __init__(self, address: ClusterAddress, timeout: float = 30.0) -> None:
        import httpx

        self.address = address
        host = urllib.parse.urlsplit(address.dashboard).hostname or ""
        # a loopback dashboard is reached directly, whatever proxy the environment names
        self._http = httpx.Client(timeout=timeout, trust_env=not is_loopback(host))

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request to the dashboard; unreachable or refused: ClusterUnreachable."""
        import httpx

        url = self.address.dashboard + path
        headers = {**auth_headers(), **kwargs.pop("headers", {})}
        try:
            r = self._http.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise ClusterUnreachable(
                self.address.dashboard, f"{type(exc).__name__}: {exc}"
            ) from None
        if r.status_code in (401, 403):
            raise ClusterUnreachable(
                self.address.dashboard,
                f"it requires Ray's token authentication and refused this kernel ({r.status_code})",
                "Set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN or "
                "~/.ray/auth_token) in the kernel's environment.",
            )
        return r

    def state(self, timeout: float | None = None) -> dict[str, Any]:
        """Serve's state as Ray reports it: applications with their config and status,
        deployments and replicas, and the HTTP options when Serve runs."""
        r = self.request("GET", APPS, **({} if timeout is None else {"timeout": timeout}))
        if r.status_code != 200:
            raise DeployError(
                f"the cluster's Serve API answered {r.status_code}: {r.text[:500].strip()} "
                "(the cluster needs Ray Serve: pip install 'ray[serve]' on its nodes)"
            )
        return r.json()

    def put(self, config: dict[str, Any]) -> None:
        r = self.request("PUT", APPS, json=config)
        if r.status_code != 200:
            raise DeployError(f"Ray refused the Serve config ({r.status_code}): {r.text[:800]}")

    def has_package(self, name: str) -> bool:
        return self.request("GET", f"/api/packages/gcs/{name}").status_code == 200

    def upload(self, name: str, data: bytes) -> None:
        r = self.request("PUT", f"/api/packages/gcs/{name}", content=data)
        if r.status_code != 200:
            raise DeployError(
                f"the cluster refused the package upload ({r.status_code}): {r.text[:500]}"
            )


_apis: dict[str, ServeApi] = {}
_apis_lock = threading.Lock()


def api_for(dashboard: str | ClusterAddress) -> ServeApi:
    """One :class:`ServeApi` per dashboard for this process (its connections are kept).

    Example::

        >>> api_for("http://127.0.0.1:8265").address.dashboard  # doctest: +SKIP
        'http://127.0.0.1:8265'
    """
    addr = dashboard if isinstance(dashboard, ClusterAddress) else parse_address(dashboard)
    with _apis_lock:
        if addr.dashboard not in _apis:
            _apis[addr.dashboard] = ServeApi(addr)
        return _apis[addr.dashboard]


def change_apps(
    api: ServeApi, change: Callable[[dict[str, dict[str, Any]]], None], *, port: int | None = None
) -> dict[str, Any]:
    """Read the Serve config, let ``change`` edit the applications (name -> config) in
    place, and write the whole config back; returns the state that was read.

    Other applications go back exactly as Ray reported them (``deployed_app_config``);
    the HTTP options too, except when Serve is not running yet: then its proxy is set to
    ``port`` (default 8000) on 127.0.0.1 for a loopback dashboard, else on every
    interface. Refused when an application was deployed imperatively (``serve.run``):
    Serve takes no declarative config beside one.

    Example::

        >>> change_apps(api, lambda apps: apps.pop("mlp", None))  # doctest: +SKIP
    """
    state = api.state()
    found = state.get("applications") or {}
    imperative = [
        n for n, a in found.items()
        if a.get("source") != "declarative" or not a.get("deployed_app_config")
    ]  # fmt: skip
    if imperative:
        raise DeployError(
            "the cluster's Serve runs applications deployed with serve.run "
            f"({', '.join(imperative)}); "
            "Serve accepts no config beside them, so this deployment would replace them. "
            "Redeploy those through a config (serve deploy) or use another cluster."
        )
    apps = {n: dict(a["deployed_app_config"]) for n, a in found.items()}
    change(apps)
    body: dict[str, Any] = {"applications": list(apps.values())}
    http = state.get("http_options")
    if http:
        body["http_options"] = {k: v for k, v in http.items() if v is not None}
        for key in ("proxy_location", "grpc_options", "target_capacity"):
            if state.get(key) is not None:
                body[key] = state[key]
    else:
        host = urllib.parse.urlsplit(api.address.dashboard).hostname or ""
        body["http_options"] = {
            "host": "127.0.0.1" if is_loopback(host) else "0.0.0.0",
            "port": port or SERVE_PORT,
        }
    api.put(body)
    return state


def serve_port(state: dict[str, Any], wanted: int | None) -> int:
    """The port Serve's HTTP proxy listens on (or will, once this deploy starts Serve).

    Example::

        >>> serve_port({"http_options": {"port": 8000}}, None)
        8000
    """
    http = state.get("http_options") or {}
    port = http.get("port")
    if port is None:
        return wanted or SERVE_PORT
    if wanted is not None and wanted != port:
        raise ValueError(
            f"Serve already runs on this cluster with its HTTP proxy on port {port}; "
            f"leave out port= (it applies only when a deploy starts Serve)"
        )
    return int(port)


# -- the package -----------------------------------------------------------------------
def build_package(directory: Path, options: dict[str, Any]) -> tuple[str, bytes]:
    """The zip a Serve application runs from, and its package name.

    Layout: ``jx_serving/`` (the portable serving modules and :mod:`..ray_app`),
    ``model/`` (the artifact directory), ``serve_options.json``. Entries are written in
    a fixed order with a fixed time, so the same model gives the same name and is
    uploaded once.

    Example::

        >>> name, data = build_package(Path("ws/deployments/mlp-1a2b"), {})  # doctest: +SKIP
        >>> name  # doctest: +SKIP
        '_ray_pkg_5c0f9e0d8a7b6c5d4e3f2a1b0c9d8e7f.zip'
    """
    from ..bundle import PORTABLE

    here = Path(__file__).resolve().parent.parent
    files: list[tuple[str, bytes]] = [
        ("jx_serving/__init__.py", b'"""Serving modules copied from jupyter-ext."""\n')
    ]
    for name in (*PORTABLE, "ray_app.py"):
        files.append((f"jx_serving/{name}", (here / name).read_bytes()))
    for path in sorted(p for p in Path(directory).iterdir() if p.is_file()):
        if path.suffix == ".log":
            continue
        files.append((f"model/{path.name}", path.read_bytes()))
    files.append(("serve_options.json", json.dumps(options, sort_keys=True).encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files:
            info = zipfile.ZipInfo(name, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data)
    data = buf.getvalue()
    return f"_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip", data


def app_config(
    name: str, package: str, options: RayServeOptions, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The Serve application config of a deployment.

    Example::

        >>> app_config("mlp", "_ray_pkg_x.zip", RayServeOptions(replicas=2))["route_prefix"]
        '/mlp'
    """
    # Serve notices a dead replica at its next health check (every 10 s by default): a
    # check every 2 s brings a SIGKILLed replica back in a few seconds, for one cheap
    # actor call per replica per period
    deployment: dict[str, Any] = {
        "name": DEPLOYMENT,
        "health_check_period_s": HEALTH_CHECK_S,
        "health_check_timeout_s": 10.0,
    }
    if options.autoscaling:
        deployment["autoscaling_config"] = dict(options.autoscaling)
    else:
        deployment["num_replicas"] = options.replicas
    actor: dict[str, Any] = {}
    if options.num_cpus is not None:
        actor["num_cpus"] = options.num_cpus
    if options.device != "cpu":
        actor["num_gpus"] = 1
    if actor:
        deployment["ray_actor_options"] = actor
    return {
        "name": name,
        "route_prefix": f"/{name}",
        "import_path": IMPORT_PATH,
        "runtime_env": {"working_dir": f"gcs://{package}"},
        "deployments": [deployment],
    }


def _serve_options(options: ServeOptions) -> dict[str, Any]:
    return {
        "device": options.device,
        "threads": options.threads,
        "max_body_mb": options.max_body_mb,
        "max_batch_size": options.max_batch_size,
        "batch_timeout_ms": options.batch_timeout_ms,
    }


# -- what Ray says about an application --------------------------------------------------
@dataclass(frozen=True)
class AppStatus:
    """One application's live state from the Serve REST API: ``status`` (Ray's:
    DEPLOYING, RUNNING, DEPLOY_FAILED, UNHEALTHY, DELETING; ``MISSING`` when there is no
    such application), replica states with their counts, the target replica count,
    Ray's messages (why replicas cannot be scheduled, why a deploy failed), and
    ``deployed_at`` (Ray's ``last_deployed_time_s``).

    Example::

        >>> AppStatus.of({"applications": {}}, "mlp").status
        'MISSING'
    """

    status: str
    replicas: dict[str, int]
    target: int | None = None
    message: str = ""
    deployed_at: float | None = None
    package: str | None = None
    pids: tuple[int, ...] = ()

    @classmethod
    def of(cls, state: dict[str, Any], app: str) -> AppStatus:
        found = (state.get("applications") or {}).get(app)
        if not found:
            return cls("MISSING", {})
        counts: dict[str, int] = {}
        messages = [found.get("message") or ""]
        target = None
        pids: list[int] = []
        for dep in (found.get("deployments") or {}).values():
            target = dep.get("target_num_replicas", target)
            messages.append(dep.get("message") or "")
            for replica in dep.get("replicas") or []:
                counts[replica["state"]] = counts.get(replica["state"], 0) + 1
                if replica["state"] == "RUNNING" and replica.get("pid"):
                    pids.append(int(replica["pid"]))
        config = found.get("deployed_app_config") or {}
        return cls(
            status=found.get("status", "UNKNOWN"),
            replicas=counts,
            target=target,
            message=" ".join(m.strip() for m in messages if m and m.strip()),
            deployed_at=found.get("last_deployed_time_s"),
            package=(config.get("runtime_env") or {}).get("working_dir"),
            pids=tuple(pids),
        )

    def replicas_text(self) -> str:
        """``'2/2 running'``, ``'1/2 running, 1 starting'``; empty when there is no app.

        Example::

            >>> AppStatus("RUNNING", {"RUNNING": 2}, 2).replicas_text()
            '2/2 running'
        """
        if self.status == "MISSING":
            return ""
        running = self.replicas.get("RUNNING", 0)
        text = f"{running}/{self.target if self.target is not None else '?'} running"
        rest = [f"{n} {s.lower()}" for s, n in sorted(self.replicas.items()) if s != "RUNNING"]
        return ", ".join([text, *rest])

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "replicas": self.replicas_text(),
            "replica_states": dict(self.replicas),
            "target_replicas": self.target,
            "message": self.message,
        }


_cache: dict[str, tuple[float, dict[str, Any] | Exception]] = {}
_CACHE_S = 1.0  # one listing asks each cluster once, not once per deployment
_DOWN_S = 10.0  # a cluster that did not answer is not asked again for this long
_READ_TIMEOUT = 5.0  # a listing must not hang on a cluster that went away


def _state_cached(dashboard: str) -> dict[str, Any]:
    now = time.monotonic()
    hit = _cache.get(dashboard)
    if hit is not None:
        at, value = hit
        if isinstance(value, Exception) and now - at < _DOWN_S:
            raise value
        if not isinstance(value, Exception) and now - at < _CACHE_S:
            return value
    try:
        state = api_for(dashboard).state(timeout=_READ_TIMEOUT)
    except (ClusterUnreachable, DeployError) as exc:
        _cache[dashboard] = (now, exc)
        raise
    _cache[dashboard] = (now, state)
    return state


def app_status(record: DeploymentRecord, fresh: bool = True) -> AppStatus:
    """The live state of a Ray deployment's application (raises ClusterUnreachable).

    Example::

        >>> app_status(open_store().get_deployment("mlp")).replicas_text()  # doctest: +SKIP
        '2/2 running'
    """
    info = record.info or {}
    dashboard = info["cluster"]
    if fresh:
        _cache.pop(dashboard, None)
    return AppStatus.of(_state_cached(dashboard), info.get("app", record.name))


def wait_app(
    api: ServeApi,
    app: str,
    *,
    timeout: float,
    after: float | None = None,
    package: str | None = None,
    replicas: int | None = None,
) -> tuple[bool, AppStatus]:
    """Wait until Ray reports ``app`` RUNNING (deployed after ``after``, with ``package``
    and ``replicas`` RUNNING replicas when given). ``(True, status)``; ``(False, the last
    status)`` when it failed or the time ran out (DEPLOY_FAILED ends the wait at once).

    Example::

        >>> ok, st = wait_app(api, "mlp", timeout=60)  # doctest: +SKIP
    """
    deadline = time.monotonic() + timeout
    status = AppStatus("MISSING", {})
    while True:
        status = AppStatus.of(api.state(), app)
        fresh = after is None or (status.deployed_at is not None and status.deployed_at != after)
        if fresh and status.status == "DEPLOY_FAILED":
            return False, status
        if (
            fresh
            and status.status == "RUNNING"
            and (package is None or status.package == f"gcs://{package}")
            and (replicas is None or status.replicas.get("RUNNING", 0) == replicas)
            and set(status.replicas) <= {"RUNNING"}
        ):
            return True, status
        if time.monotonic() > deadline:
            return False, status
        time.sleep(0.2)


# -- the target ------------------------------------------------------------------------
class Target(DeployTarget):
    """A Ray Serve application on a Ray cluster: ``deploy`` returns once Ray says it runs
    and its answer on the example through Serve's proxy matches the in-kernel model's."""

    name = "ray"

    def check(self, options: ServeOptions) -> None:
        if options.out is not None:
            raise ValueError("out applies to target='bundle' (the bundle directory)")
        if options.engine != "fastapi":
            raise ValueError("target='ray' serves with the fastapi engine; leave out engine=")
        if not isinstance(options, RayServeOptions):
            raise ValueError("target='ray' needs RayServeOptions (deploy() makes them)")
        if options.autoscaling is not None:
            check_autoscaling(options.autoscaling)
        elif (
            isinstance(options.replicas, bool)
            or not isinstance(options.replicas, int)
            or options.replicas < 1
        ):
            raise ValueError(f"replicas must be a whole number >= 1; got {options.replicas!r}")
        if options.num_cpus is not None and not options.num_cpus > 0:
            raise ValueError(f"num_cpus must be positive; got {options.num_cpus!r}")

    def api_key(self, options: ServeOptions) -> tuple[str | None, bool]:
        # Serve's proxy on a cluster that is not this machine listens on every interface:
        # never serve a network unauthenticated
        cluster = getattr(options, "cluster", None)
        host = urllib.parse.urlsplit(cluster.dashboard).hostname if cluster else None
        if options.api_key is None and host is not None and not is_loopback(host):
            return secrets.token_urlsafe(24), True
        return options.api_key, False

    def prepare(self, job: DeployJob) -> None:
        """Refuse before the export: no cluster, a cluster that does not answer, Serve
        beside imperative apps, or an application of this name that is not ours."""
        options = job.options
        assert isinstance(options, RayServeOptions) and options.cluster is not None
        api = api_for(options.cluster)
        state = api.state()
        serve_port(state, options.port)
        found = (state.get("applications") or {}).get(job.name)
        if found is not None:
            config = found.get("deployed_app_config") or {}
            old = job.store.get_deployment(job.name)
            ours = (
                old is not None
                and old.target == self.name
                and (old.info or {}).get("cluster") == options.cluster.dashboard
            )
            if config.get("import_path") != IMPORT_PATH or not ours:
                raise DeployError(
                    f"the cluster already runs a Serve application named {job.name!r} that "
                    "this workspace did not deploy; choose another name (name=...)"
                )

    def artifact_dir(self, job: DeployJob) -> Path:
        import uuid

        return job.home / "deployments" / f"{job.name}-{uuid.uuid4().hex[:6]}"

    def deploy(self, job: DeployJob, result: ExportResult) -> DeployOutcome:
        options = job.options
        assert isinstance(options, RayServeOptions) and options.cluster is not None
        cluster = options.cluster
        api = api_for(cluster)
        expected = result.reference
        if expected is None:
            import torch

            with torch.inference_mode():
                expected = job.model(job.example).numpy()
        t0 = time.perf_counter()
        package, data = build_package(result.directory, _serve_options(options))
        job.timings["package"] = time.perf_counter() - t0
        if len(data) >= UPLOAD_LIMIT:
            return DeployOutcome(
                Outcome.FAILED, job.name,
                message=f"the package is {len(data) / 2**20:.0f} MiB and the cluster's dashboard "
                f"takes uploads of at most {UPLOAD_LIMIT // 2**20} MiB: try format='onnx' (often "
                "smaller), or write a bundle (target='bundle') and serve it from storage the "
                "cluster reaches",
            )  # fmt: skip
        previous = job.store.get_deployment(job.name)
        if previous is not None and not _same_app(previous, cluster):
            get_target(previous.target).stop(job.store, previous)
        t0 = time.perf_counter()
        if not api.has_package(package):
            api.upload(package, data)
        job.timings["upload"] = time.perf_counter() - t0
        state = api.state()
        port = serve_port(state, options.port)
        host = urllib.parse.urlsplit(cluster.dashboard).hostname or "127.0.0.1"
        before = AppStatus.of(state, job.name).deployed_at
        info = record_info(result, job.example)
        info.update(
            api_key_required=job.api_key is not None, cluster=cluster.dashboard,
            client=cluster.client, app=job.name, package=package,
            package_mib=round(len(data) / 2**20, 3), replicas=options.replicas,
            autoscaling=options.autoscaling, num_cpus=options.num_cpus,
        )  # fmt: skip
        shown = f"[{host}]" if ":" in host else host
        record = job.store.upsert_deployment(
            job.name, target=self.name, engine="ray-serve", format=result.format,
            status="starting", url=f"http://{shown}:{port}/{job.name}", host=host, port=port,
            path=str(result.directory), log_path=None, run_id=job.run_id, info=info,
            pid=None, pid_started=None, error=None, ended=None,
        )  # fmt: skip
        if previous is not None and previous.path != record.path:
            get_target(previous.target).discard(job.home, previous)
        config = app_config(job.name, package, options)
        t0 = time.perf_counter()
        try:
            change_apps(api, lambda apps: apps.__setitem__(job.name, config), port=port)
        except (DeployError, ClusterUnreachable) as exc:
            return _failed(job, None, str(exc))
        job.timings["serve_put"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ok, status = wait_app(api, job.name, timeout=options.timeout, after=before, package=package)
        job.timings["healthy"] = time.perf_counter() - t0
        if not ok:
            why = status.message or f"its status is {status.status}"
            if status.status != "DEPLOY_FAILED":
                why = f"not running after {options.timeout:.0f} s ({status.status}): {why}"
            return _failed(job, api, f"Ray could not run the application: {why}")
        t0 = time.perf_counter()
        served = _served_output(job, record)
        job.timings["http_parity"] = time.perf_counter() - t0
        if isinstance(served, str):
            return _failed(job, api, served)
        diff = float(np.max(np.abs(served.astype(np.float64) - expected.astype(np.float64))))
        if not within(served, expected, job.tolerance):
            return _failed(
                job, api,
                f"parity check failed: Serve's output on the example differs from the in-kernel "
                f"model's by up to {diff:.3g} (tolerance {job.tolerance:g}); it was removed",
            )  # fmt: skip
        info = dict(record.info or {})
        info.update(
            parity_max_abs_diff=diff, healthy_s=round(job.timings["healthy"], 3),
            serve=status.to_json(), timings=step_timings(job),
        )  # fmt: skip
        job.store.update_deployment(job.name, status="running", info=info)
        record = job.store.get_deployment(job.name) or record
        job.say(
            f"Serving {job.name} on Ray Serve at {record.url} ({status.replicas_text()}): "
            f"running {job.timings['healthy']:.1f} s after the config was written."
        )
        if job.generated_key:
            job.say(
                f"The cluster is not this machine, so an API key is required; it is shown "
                f"once: {job.api_key}\nSend it as the X-API-Key header (dep.predict does)."
            )
        return DeployOutcome(Outcome.STARTED, job.name, record)

    def stop(self, store: Store, record: DeploymentRecord) -> DeploymentRecord:
        """Remove this deployment's application, and nothing else, from the cluster's
        Serve config; returns once Ray no longer lists it (or after 30 s)."""
        info = record.info or {}
        if info.get("cluster") and record.status not in ("stopped", "failed"):
            api = api_for(info["cluster"])
            app = info.get("app", record.name)
            state = change_apps(api, lambda apps: apps.pop(app, None))
            if app in (state.get("applications") or {}):
                deadline = time.monotonic() + 30.0
                while AppStatus.of(api.state(), app).status != "MISSING":
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
        if record.status not in ("stopped", "failed"):
            store.update_deployment(record.name, status="stopped", ended=time.time())
        return store.get_deployment(record.name) or dataclasses.replace(record, status="stopped")

    def discard(self, home: Path, record: DeploymentRecord) -> None:
        """Delete the local artifact directory (the cluster's copy is Ray's to collect)."""
        get_target("local").discard(home, record)

    def observe(self, record: DeploymentRecord) -> DeploymentRecord:
        if record.status not in LIVE or not (record.info or {}).get("cluster"):
            return record  # starting: the deploying kernel owns the record until it is done
        try:
            status = app_status(record, fresh=False)
        except (ClusterUnreachable, DeployError) as exc:
            return dataclasses.replace(record, error=f"cannot ask the cluster: {exc}")
        info = dict(record.info or {})
        info["serve"] = status.to_json()
        if status.status == "MISSING":
            return dataclasses.replace(
                record, status="lost", ended=time.time(), info=info,
                error=f"the Serve application {info.get('app', record.name)!r} is gone from "
                "the cluster (removed outside this workspace, or the cluster restarted)",
            )  # fmt: skip
        if status.status in ("RUNNING", "DEPLOYING", "DELETING"):
            # still serving; Ray's progress notes ("Upscaling from 1 to 3 replicas.") stay
            # in info, its warning that replicas cannot be scheduled is the record's error
            stuck = STUCK in status.message
            return dataclasses.replace(
                record, status="running", info=info, error=status.message if stuck else None
            )
        return dataclasses.replace(
            record, status="unhealthy", info=info, error=status.message or status.status
        )

    def serve_status(self, record: DeploymentRecord) -> dict[str, Any]:
        """What Ray says of ``record``'s application now (``Deployment.serve_status``)."""
        return app_status(record).to_json()

    def scale(
        self,
        store: Store,
        record: DeploymentRecord,
        replicas: int | None = None,
        autoscaling: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        timeout: float = 120.0,
    ) -> DeploymentRecord:
        """Set the replica count (or Ray's autoscaling) of the deployment's application,
        leaving every other application as it is; with ``wait``, return once that many
        replicas run (ValueError for a bad count, DeployError when Ray does not get there)."""
        if (replicas is None) == (autoscaling is None):
            raise ValueError("give replicas=N or autoscaling={...}, one of the two")
        if autoscaling is not None:
            check_autoscaling(autoscaling)
        elif isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"replicas must be a whole number >= 1; got {replicas!r}")
        info = dict(record.info or {})
        api = api_for(info["cluster"])
        app = info.get("app", record.name)

        def change(apps: dict[str, dict[str, Any]]) -> None:
            if app not in apps:
                raise DeployError(f"the Serve application {app!r} is not on the cluster")
            config = apps[app]
            deployments = []
            for dep in config.get("deployments") or [{"name": DEPLOYMENT}]:
                dep = {
                    k: v for k, v in dep.items() if k not in ("num_replicas", "autoscaling_config")
                }
                if autoscaling is not None:
                    dep["autoscaling_config"] = dict(autoscaling)
                else:
                    dep["num_replicas"] = replicas
                deployments.append(dep)
            config["deployments"] = deployments

        change_apps(api, change)
        info.update(replicas=replicas or 1, autoscaling=autoscaling)
        store.update_deployment(record.name, info=info)
        if wait:
            ok, status = wait_app(api, app, timeout=timeout, replicas=replicas)
            if not ok:
                raise DeployError(
                    f"{record.name!r} did not reach {replicas or 'its'} running replicas in "
                    f"{timeout:.0f} s ({status.replicas_text()}): {status.message or status.status}"
                )
        return store.get_deployment(record.name) or record


def check_autoscaling(autoscaling: Any) -> None:
    """Refuse an autoscaling config Ray would refuse later, saying what is right.

    Example::

        >>> check_autoscaling({"min_replicas": 1, "max_replicas": 4})
    """
    if not isinstance(autoscaling, dict):
        raise ValueError(
            f"autoscaling is Ray's autoscaling_config, a dict such as "
            f"{{'min_replicas': 1, 'max_replicas': 4}}; got {type(autoscaling).__name__}"
        )
    low, high = autoscaling.get("min_replicas", 1), autoscaling.get("max_replicas", 1)
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high and high >= 1):
        raise ValueError(
            f"autoscaling needs 0 <= min_replicas <= max_replicas, max_replicas >= 1; got "
            f"min {low!r}, max {high!r}"
        )


def _same_app(record: DeploymentRecord, cluster: ClusterAddress) -> bool:
    return record.target == "ray" and (record.info or {}).get("cluster") == cluster.dashboard


def _served_output(job: DeployJob, record: DeploymentRecord, retry_s: float = 15.0) -> Any:
    """Serve's answer on the example, or a message saying why there is none. Serve's proxy
    learns a new route a moment after Ray reports the application running: a 404 or 503
    in that moment is asked again."""
    from ..client import Deployment

    dep = Deployment(record, api_key=job.api_key, home=job.home)
    deadline = time.monotonic() + retry_s
    while True:
        try:
            return dep.predict(job.example.numpy())
        except DeployError as exc:
            text = str(exc)
            if time.monotonic() > deadline or not (" 404:" in text or " 503:" in text):
                return text
        time.sleep(0.1)


def _failed(job: DeployJob, api: ServeApi | None, message: str) -> DeployOutcome:
    """Remove our application (when it was written) and record the failure."""
    if api is not None:
        try:
            change_apps(api, lambda apps: apps.pop(job.name, None))
        except (DeployError, ClusterUnreachable) as exc:
            message += f" (and removing the application failed: {exc})"
    job.store.update_deployment(job.name, status="failed", ended=time.time(), error=message)
    return DeployOutcome(
        Outcome.FAILED, job.name, job.store.get_deployment(job.name), message=message
    )
