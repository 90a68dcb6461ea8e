"""The public entry points: ``deploy``, ``deployments``, ``get_deployment``.

``deploy`` exports the model (:mod:`.export`), then either starts a local server
(:mod:`.local`), health-checks it and compares its answer on the example with the in-kernel
model's, or writes a bundle (:mod:`.bundle`). Every deployment is recorded in the workspace
store, so any kernel (and the sidebar) can list and stop it.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .client import Deployment, mark_lost
from .export import CHOICES, DeployError, as_example, cpu_eval_model, export_model, within
from .protocol import hash_key
from .server import ENGINES, LITSERVE_HOSTS, is_loopback

TARGETS = ("local", "bundle")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
COLUMNS = ["name", "target", "status", "url", "format", "engine", "created", "path", "error"]


class DeploymentNotFound(LookupError):
    """No deployment of that name in this workspace."""


def _check_args(
    target: str,
    fmt: str,
    engine: str,
    port: int | None,
    host: str,
    out: Any,
    workers: int,
    max_batch_size: int,
    batch_timeout: float,
    tolerance: float,
) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    if fmt not in CHOICES:
        raise ValueError(f"format must be one of {', '.join(CHOICES)}; got {fmt!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        raise ValueError(f"port must be an integer from 1 to 65535; got {port!r}")
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be an address such as 127.0.0.1; got {host!r}")
    if target == "bundle" and port is not None:
        raise ValueError(
            "port applies to target='local'; a bundle's port is chosen when it runs "
            "(python server.py --port P)"
        )
    if target == "local" and out is not None:
        raise ValueError("out applies to target='bundle' (the bundle directory)")
    if target == "local" and engine == "litserve" and host not in (*LITSERVE_HOSTS, "localhost"):
        raise ValueError(
            f"the litserve engine binds only {', '.join(LITSERVE_HOSTS)}; got host {host!r}"
        )
    if workers < 1 or max_batch_size < 1:
        raise ValueError("workers and max_batch_size must be at least 1")
    if batch_timeout < 0:
        raise ValueError(f"batch_timeout must be >= 0 seconds; got {batch_timeout}")
    if engine == "fastapi" and (workers != 1 or max_batch_size != 1 or batch_timeout):
        raise ValueError(
            "workers, max_batch_size and batch_timeout are LitServe options: add "
            "engine='litserve' (--engine litserve)"
        )
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive; got {tolerance}")


def _check_device(device: str) -> None:
    import torch

    if device == "cpu":
        return
    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise ValueError(f"device must be cpu, cuda or cuda:N; got {device!r}")
    count = torch.cuda.device_count()
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        raise ValueError(
            f"device {device!r} is not available here ({count} CUDA devices); use device='cpu'"
        )


def _resolve_model(model: Any, from_run: Any) -> tuple[Any, str | None, str | None]:
    """``(model, run_id, run_name)``."""
    import torch

    run_id = run_name = None
    if from_run is not None:
        if model is not None:
            raise ValueError("give either a model or from_run (a run's best checkpoint), not both")
        from ..training import get_run

        run = get_run(from_run)
        model = run.load_model()
        run_id, run_name = run.id, run.name
    if model is None:
        raise ValueError("nothing to deploy: pass a model (a torch.nn.Module), or from_run=RUN")
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"deploy needs a torch.nn.Module (a LightningModule is one); got "
            f"{type(model).__name__}. Define `model = MyModel(...)` in the cell, or name the "
            "variable with --model VAR."
        )
    return model, run_id, run_name


def _resolve_example(model: Any, example: Any) -> Any:
    if example is None:
        example = getattr(model, "example_input_array", None)
    if example is None:
        raise ValueError(
            "no example input to export and check the model with: pass one, e.g. "
            "example=torch.randn(4, 13) (%%deploy --example 'torch.randn(4, 13)'), or set "
            "model.example_input_array (Lightning's convention)"
        )
    return as_example(example)


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(text, flush=True)


def deploy(
    model: Any = None,
    target: str = "local",
    name: str | None = None,
    example: Any = None,
    *,
    format: str = "auto",
    port: int | None = None,
    host: str = "127.0.0.1",
    out: str | Path | None = None,
    from_run: Any = None,
    engine: str = "fastapi",
    api_key: str | None = None,
    workers: int = 1,
    max_batch_size: int = 1,
    batch_timeout: float = 0.0,
    threads: int | None = None,
    device: str = "cpu",
    max_body_mb: float = 16.0,
    tolerance: float = 1e-4,
    timeout: float = 120.0,
    verbose: bool = True,
) -> Deployment:
    """Deploy a model: a local inference server (``target='local'``) or a bundle directory.

    The model (any ``torch.nn.Module``; or ``from_run``: a run's best checkpoint) is put in
    eval mode and exported (``format``: ``auto`` picks the fastest of onnx, pickle, pt2 that
    passes parity on ``example``; default: ``model.example_input_array``). A local server is
    health-checked and the example sent over HTTP must match the in-kernel output within
    ``tolerance``, else it is stopped. Redeploying a name replaces the old server (and keeps
    its port when none is given). A host that is not loopback without ``api_key`` gets a
    generated key, printed once. ``threads``: intra-op threads of the model runtime in the
    server (default: the runtime's choice). ``device``: where the server runs the model
    (``cpu``, ``cuda``, ``cuda:N``). ``workers``, ``max_batch_size`` and
    ``batch_timeout`` are LitServe's (``engine='litserve'``).

    Example::

        >>> dep = jupyter_ext.deploy(model, example=torch.randn(4, 13))  # doctest: +SKIP
        >>> dep.predict(torch.randn(2, 13))  # doctest: +SKIP
        >>> jupyter_ext.deploy(model, "bundle", out="mlp_bundle")  # doctest: +SKIP
    """
    _check_args(
        target, format, engine, port, host, out, workers, max_batch_size, batch_timeout, tolerance
    )
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1; got {threads}")
    _check_device(device)
    model, run_id, run_name = _resolve_model(model, from_run)
    x = _resolve_example(model, example)
    name = name or run_name or type(model).__name__.lower()
    if not NAME_RE.match(name):
        raise ValueError(
            f"deployment name {name!r} must be 1-63 letters, digits, '_', '.', '-' (starting "
            "with a letter or digit): it appears in URLs"
        )
    generated = False
    if target == "local" and api_key is None and not is_loopback(host):
        api_key, generated = secrets.token_urlsafe(24), True
    key_hash = hash_key(api_key) if api_key else None

    from ..config import get_config
    from ..store import open_store

    home = get_config().home_path
    store = open_store(home)
    if target == "local" and port is not None:
        _check_port(store, name, host, port)
    was_training = model.training
    try:
        served = cpu_eval_model(model)
        if target == "bundle":
            out_path = Path(out) if out is not None else Path.cwd() / f"{name}_bundle"
            # exported beside the bundle, then moved in by write_bundle
            art_dir = out_path.parent / f".{out_path.name}.model-{uuid.uuid4().hex[:6]}"
        else:
            art_dir = home / "deployments" / f"{name}-{uuid.uuid4().hex[:6]}"
        result = export_model(
            served, x, art_dir, name=name, fmt=format, tolerance=tolerance,
            api_key_hash=key_hash, extra={"run_id": run_id},
        )  # fmt: skip
        _say(verbose, f"Exported {name} as {result.format} in {result.export_s:.1f} s "
             f"({result.reason}); parity max |diff| {result.max_abs_diff:.3g}")  # fmt: skip
        if target == "bundle":
            from .bundle import write_bundle

            try:
                write_bundle(
                    out_path, result, engine=engine, model=served, example=x,
                    api_key_required=key_hash is not None,
                )  # fmt: skip
            finally:
                shutil.rmtree(art_dir, ignore_errors=True)
            old = store.get_deployment(name)
            if old is not None and old["target"] == "local":  # the name now means the bundle
                from .local import stop_group

                stop_group(old["pid"], old["pid_started"])
                _remove_artifacts(home, Path(old["path"]))
            record = store.upsert_deployment(
                name,
                target="bundle",
                engine=engine,
                format=result.format,
                status="built",
                path=str(out_path.resolve()),
                run_id=run_id,
                info=_info(result, x),
            )
            _say(verbose, f"Bundle written to {out_path} (python server.py, or docker build).")
            return Deployment(record, api_key=api_key, home=home)
        return _start_local(
            store, home, name, result, served, x,
            host=host, port=port, engine=engine, api_key=api_key, generated=generated,
            run_id=run_id, workers=workers, max_batch_size=max_batch_size,
            batch_timeout=batch_timeout, threads=threads, device=device, max_body_mb=max_body_mb,
            tolerance=tolerance, timeout=timeout, verbose=verbose,
        )  # fmt: skip
    finally:
        model.train(was_training)


def _check_port(store: Any, name: str, host: str, port: int) -> None:
    """Refuse a taken port before exporting, unless this name's old server holds it."""
    from ..store import process_alive
    from . import local

    old = store.get_deployment(name)
    if (
        old is not None
        and old["target"] == "local"
        and old["port"] == port
        and process_alive(old["pid"], old["pid_started"])
    ):
        return  # the redeploy stops it first
    local.reserve_port(host, port).close()


def _info(result: Any, x: Any) -> dict[str, Any]:
    return {
        "reason": result.reason,
        "timings_us": result.timings_us,
        "failures": result.failures,
        "export_s": round(result.export_s, 3),
        "export_max_abs_diff": result.max_abs_diff,
        "example_shape": list(x.shape),
        "spec": result.spec.to_json(),
    }


def _start_local(
    store: Any,
    home: Path,
    name: str,
    result: Any,
    model: Any,
    x: Any,
    *,
    host: str,
    port: int | None,
    engine: str,
    api_key: str | None,
    generated: bool,
    run_id: str | None,
    workers: int,
    max_batch_size: int,
    batch_timeout: float,
    threads: int | None,
    device: str,
    max_body_mb: float,
    tolerance: float,
    timeout: float,
    verbose: bool,
) -> Deployment:
    import torch

    from . import local

    with torch.inference_mode():
        expected = model(x).numpy()
    # replace a running server of this name: stop it first, and keep its port if free
    old = store.get_deployment(name)
    keep_port = None
    if old is not None and old["target"] == "local":
        if local.stop_group(old["pid"], old["pid_started"]):
            _say(verbose, f"Stopped the previous {name} (pid {old['pid']}).")
        keep_port = old["port"]
    sock = None
    if port is not None:
        sock = local.reserve_port(host, port)
    elif keep_port and local.port_free(host, keep_port):
        with contextlib.suppress(DeployError):
            sock = local.reserve_port(host, keep_port)
    if sock is None:
        sock = local.reserve_port(host, None)
    bound = sock.getsockname()[1]
    url_host = "127.0.0.1" if not is_loopback(host) or host == "localhost" else host
    url = f"http://{url_host if ':' not in url_host else f'[{url_host}]'}:{bound}"
    options = ["--max-body-mb", str(max_body_mb)]
    if threads:
        options += ["--threads", str(threads)]
    if device != "cpu":
        options += ["--device", device]
    if engine == "litserve":
        options += ["--workers", str(workers), "--max-batch-size", str(max_batch_size)]
        options += ["--batch-timeout", str(batch_timeout)]
        sock.close()  # LitServe binds the port itself
        sock = None
    log_path = result.directory / "server.log"
    info = _info(result, x)
    info["api_key_required"] = api_key is not None
    store.upsert_deployment(
        name,
        target="local",
        engine=engine,
        format=result.format,
        status="starting",
        url=url,
        host=host,
        port=bound,
        path=str(result.directory),
        log_path=str(log_path),
        run_id=run_id,
        info=info,
    )
    if old is not None and old.get("path") and old["path"] != str(result.directory):
        _remove_artifacts(home, Path(old["path"]))
    try:
        proc = local.spawn(
            result.directory, host=host, engine=engine, log_path=log_path, sock=sock,
            port=bound, api_key=api_key, options=options,
        )  # fmt: skip
    except OSError as exc:
        store.update_deployment(name, status="failed", ended=time.time(), error=str(exc))
        raise DeployError(f"deployment {name!r} failed: cannot start the server: {exc}") from None
    finally:
        if sock is not None:
            sock.close()  # the server holds its own copy now
    from ..store import process_started

    store.update_deployment(name, pid=proc.pid, pid_started=process_started(proc.pid))
    record = store.get_deployment(name)
    dep = Deployment(record, api_key=api_key, home=home)

    def fail(message: str) -> DeployError:
        local.stop_group(proc.pid)
        store.update_deployment(name, status="failed", ended=time.time(), error=message)
        return DeployError(f"deployment {name!r} failed: {message}")

    try:
        healthy_s = local.wait_healthy(url, proc, log_path, timeout=timeout)
        served = dep.predict(x.numpy())
    except DeployError as exc:
        raise fail(str(exc)) from None
    except BaseException:
        fail("interrupted before it was checked")  # e.g. the cell was interrupted
        raise
    diff = float(np.max(np.abs(served.astype(np.float64) - expected.astype(np.float64))))
    if not within(served, expected, tolerance):
        raise fail(
            f"parity check failed: the server's output on the example differs from the "
            f"in-kernel model's by up to {diff:.3g} (tolerance {tolerance:g}); it was stopped"
        )
    info.update(parity_max_abs_diff=diff, healthy_s=round(healthy_s, 3))
    store.update_deployment(name, status="running", info=info)
    dep.refresh()
    _say(
        verbose,
        f"Serving {name} at {url} ({engine}, pid {proc.pid}): healthy {healthy_s:.1f} s after "
        f"start; parity over HTTP: max |diff| {diff:.3g} on the example {list(x.shape)}.",
    )
    if generated:
        _say(
            verbose,
            f"{host} is not loopback, so an API key is required; it is shown once: {api_key}\n"
            "Send it as the X-API-Key header (dep.predict does).",
        )
    return dep


def _remove_artifacts(home: Path, path: Path) -> None:
    """Delete an old artifact directory, only ever inside the workspace's deployments."""
    root = (home / "deployments").resolve()
    if path.resolve().parent == root and path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def deployments() -> pd.DataFrame:
    """Every deployment of the workspace: name, target, status, url, format, engine, created.

    Example::

        >>> jupyter_ext.deployments()[["name", "status", "url"]]  # doctest: +SKIP
    """
    from ..config import get_config
    from ..store import open_store, process_alive

    store = open_store(get_config().home_path)
    rows = []
    for r in store.list_deployments():
        if r["status"] in ("running", "starting") and not process_alive(r["pid"], r["pid_started"]):
            mark_lost(store, r)
            r = store.get_deployment(r["name"]) or r
        rows.append({c: r.get(c) for c in COLUMNS})
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["created"] = pd.to_datetime(df["created"], unit="s")
    return df


def get_deployment(name: str, api_key: str | None = None) -> Deployment:
    """The deployment called ``name`` (``api_key``: for a server that requires one).

    Example::

        >>> jupyter_ext.get_deployment("mlp").stop()  # doctest: +SKIP
    """
    from ..config import get_config
    from ..store import open_store

    home = get_config().home_path
    row = open_store(home).get_deployment(name)
    if row is None:
        known = [r["name"] for r in open_store(home).list_deployments()]
        listed = ", ".join(known) if known else "none yet"
        raise DeploymentNotFound(f"no deployment named {name!r} in this workspace ({listed})")
    return Deployment(row, api_key=api_key, home=home)
