"""The public entry points: ``deploy``, ``deployments``, ``get_deployment``.

``deploy`` checks its arguments, resolves the model and the example, exports the model
(:mod:`.export`) and hands the artifact to a deploy target (:mod:`.targets`: a local
server, health- and parity-checked, or a bundle directory). Every deployment is recorded
in the workspace store, so any kernel (and the sidebar) can list and stop it; readers see
it through :func:`.records.current`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .client import Deployment
from .export import CACHE_DIR, CHOICES, as_example, cpu_eval_model, export_model
from .protocol import hash_key
from .records import check_name, current, current_all
from .server import ENGINES
from .targets import DeployJob, DeployTarget, ServeOptions, get_target, target_names

if TYPE_CHECKING:
    import pandas as pd

    from .export import ExportResult

COLUMNS = ["name", "target", "status", "url", "format", "engine", "created", "path", "error"]
#: more columns, derived from a record's details: a Ray deployment's live replica count
EXTRA = ["replicas"]


class DeploymentNotFound(LookupError):
    """No deployment of that name in this workspace."""


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
    batch_timeout_ms: float = 0.0,
    threads: int | None = None,
    device: str = "cpu",
    max_body_mb: float = 16.0,
    tolerance: float = 1e-4,
    timeout: float = 120.0,
    verbose: bool = True,
    tokenizer: Any = None,
    adapters: dict[str, Any] | None = None,
    dtype: str | None = None,
    cluster: Any = None,
    replicas: int = 1,
    autoscaling: dict[str, Any] | None = None,
    num_cpus: float | None = None,
) -> Deployment:
    """Deploy a model: a local inference server (``target='local'``), a bundle directory,
    or a Ray Serve application on a Ray cluster (``target='ray'``).

    The model (any ``torch.nn.Module``; or ``from_run``: a run's best checkpoint) is put in
    eval mode and exported (``format``: ``auto`` picks the fastest of onnx, pickle, pt2 that
    passes parity on ``example``; default: ``model.example_input_array``). A local server is
    health-checked and the example sent over HTTP must match the in-kernel output within
    ``tolerance``, else it is stopped. Redeploying a name replaces the old server (and keeps
    its port when none is given). A host that is not loopback without ``api_key`` gets a
    generated key, printed once. ``threads``: intra-op threads of the model runtime in the
    server (default: the runtime's choice). ``device``: where the server runs the model
    (``cpu``, ``cuda``, ``cuda:N``). ``max_batch_size`` > 1 turns on dynamic batching:
    concurrent requests are stacked into one forward pass of at most that many rows, a
    request waiting at most ``batch_timeout_ms`` for others (0: only those already
    queued). ``workers`` is LitServe's (``engine='litserve'``). Raises ``DeployError`` saying
    what failed (the server's log included) when the deployment could not be made.

    Text generation: ``model`` may also be a fine-tune's ``Run``, a Hugging Face model (or
    PEFT adapter) directory, or a transformers model with ``tokenizer=``; the server then
    speaks the OpenAI API under ``{url}/v1`` (:mod:`.textgen`), generating with
    transformers (``engine='transformers'``, the default) or vLLM (``engine='vllm'``, where
    installed on a GPU). ``adapters={"name": run_or_adapter_dir}`` serves more fine-tunes
    of the same base as more model names from the one server. ``dtype``: the weights'
    dtype in the server (default: bfloat16 on CUDA, float32 on CPU).

    Example::

        >>> dep = jupyter_ext.deploy(model, example=torch.randn(4, 13))  # doctest: +SKIP
        >>> dep.predict(torch.randn(2, 13))  # doctest: +SKIP
        >>> jupyter_ext.deploy(model, "bundle", out="mlp_bundle")  # doctest: +SKIP
        >>> chat = jupyter_ext.deploy(run_a, adapters={"b": run_b})  # doctest: +SKIP
        >>> chat.chat([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
        >>> on_ray = jupyter_ext.deploy(model, "ray", replicas=2)  # doctest: +SKIP
        >>> on_ray.scale(3)  # doctest: +SKIP
    """
    from .textgen.deploy import is_text_model

    text_source = model
    if from_run is not None and model is None:
        from ..training.run import get_run

        run = get_run(from_run)
        text_source = run if is_text_model(run) else None
    if text_source is not None and (is_text_model(text_source) or tokenizer is not None):
        return _deploy_text(
            text_source, target, name, example, format, port, host, engine, api_key,
            device, timeout, verbose, tokenizer, adapters, dtype,
        )  # fmt: skip
    if adapters is not None or tokenizer is not None:
        raise ValueError("tokenizer= and adapters= apply to text models (a causal LM)")
    started = time.perf_counter()
    chosen = get_target(target)
    common = dict(
        engine=engine, host=host, port=port, out=Path(out) if out is not None else None,
        api_key=api_key, workers=workers, max_batch_size=max_batch_size,
        batch_timeout_ms=batch_timeout_ms, threads=threads, device=device, max_body_mb=max_body_mb,
        timeout=timeout,
    )  # fmt: skip
    options = _options(target, common, cluster, replicas, autoscaling, num_cpus)
    _check_options(options, format, tolerance)
    chosen.check(options)
    _check_device(device)
    model, run_id, run_name = _resolve_model(model, from_run)
    x = _resolve_example(model, example)
    name = check_name(name or run_name or type(model).__name__.lower())
    was_training = model.training
    try:
        job = _job(
            chosen, name, options, cpu_eval_model(model), x, run_id, tolerance, verbose, started
        )
        chosen.prepare(job)
        job.timings["prepare"] = time.perf_counter() - started
        result = _export(chosen, job, format)
        outcome = chosen.deploy(job, result)
    finally:
        model.train(was_training)
    if not outcome.ok or outcome.record is None:
        raise outcome.error()
    return Deployment(outcome.record, api_key=job.api_key, home=job.home)


def _deploy_text(
    source: Any,
    target: str,
    name: str | None,
    example: Any,
    fmt: str,
    port: int | None,
    host: str,
    engine: str,
    api_key: str | None,
    device: str,
    timeout: float,
    verbose: bool,
    tokenizer: Any,
    adapters: dict[str, Any] | None,
    dtype: str | None,
) -> Deployment:
    """A text-generation deployment (:mod:`.textgen.deploy`), after refusing what does
    not apply to one."""
    from .textgen.deploy import deploy_text

    if target != "local":
        raise ValueError(f"text models deploy to target='local' for now; got {target!r}")
    if example is not None or fmt != "auto":
        raise ValueError("example= and format= apply to tensor models, not to a causal LM")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        raise ValueError(f"port must be an integer from 1 to 65535; got {port!r}")
    _check_device(device)
    return deploy_text(
        source, name=name, tokenizer=tokenizer, adapters=adapters, engine=engine, host=host,
        port=port, api_key=api_key, device=device, dtype=dtype, timeout=timeout, verbose=verbose,
    )  # fmt: skip


def _options(
    target: str,
    common: dict[str, Any],
    cluster: Any,
    replicas: int,
    autoscaling: dict[str, Any] | None,
    num_cpus: float | None,
) -> ServeOptions:
    """The target's options; the Ray ones are refused for any other target."""
    if target != "ray":
        if cluster is not None or replicas != 1 or autoscaling is not None or num_cpus is not None:
            raise ValueError(
                "cluster=, replicas=, autoscaling= and num_cpus= apply to target='ray' "
                "(%%deploy --target ray)"
            )
        return ServeOptions(**common)
    from ..cluster.address import ClusterAddress, parse_address
    from ..cluster.state import current_cluster
    from .targets.ray import RayServeOptions

    if cluster is None:
        cluster = current_cluster()
        if cluster is None:
            raise ValueError(
                "target='ray' deploys to a Ray cluster: select one first (%cluster "
                "http://HEAD:8265, jupyter_ext.use_cluster(...)) or pass cluster=ADDRESS"
            )
    elif not isinstance(cluster, ClusterAddress):
        cluster = parse_address(cluster)
    return RayServeOptions(
        **common, cluster=cluster, replicas=replicas, autoscaling=autoscaling, num_cpus=num_cpus
    )


def _check_options(options: ServeOptions, fmt: str, tolerance: float) -> None:
    """Refuse what no target accepts, saying what would be right."""
    port, host = options.port, options.host
    if fmt not in CHOICES:
        raise ValueError(f"format must be one of {', '.join(CHOICES)}; got {fmt!r}")
    if options.engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {options.engine!r}")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535
    ):
        raise ValueError(f"port must be an integer from 1 to 65535; got {port!r}")
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be an address such as 127.0.0.1; got {host!r}")
    if options.workers < 1 or options.max_batch_size < 1:
        raise ValueError("workers and max_batch_size must be at least 1")
    if not 0 <= options.batch_timeout_ms <= 1000:
        raise ValueError(
            f"batch_timeout_ms must be from 0 to 1000 milliseconds; got {options.batch_timeout_ms}"
        )
    if options.batch_timeout_ms and options.max_batch_size == 1:
        raise ValueError(
            "batch_timeout_ms applies to dynamic batching: give max_batch_size > 1 too "
            "(--max-batch-size 16 --batch-timeout-ms 2)"
        )
    if options.engine == "fastapi" and options.workers != 1:
        raise ValueError("workers is a LitServe option: add engine='litserve' (--engine litserve)")
    if options.threads is not None and options.threads < 1:
        raise ValueError(f"threads must be at least 1; got {options.threads}")
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
    """``(model, run_id, run_name)``: the model given, or the one of ``from_run``."""
    import torch

    run_id = run_name = None
    if from_run is not None:
        if model is not None:
            raise ValueError("give either a model or from_run (a run's best checkpoint), not both")
        from ..training.run import get_run

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


def _job(
    target: DeployTarget,
    name: str,
    options: ServeOptions,
    served: Any,
    x: Any,
    run_id: str | None,
    tolerance: float,
    verbose: bool,
    started: float,
) -> DeployJob:
    """Everything the target is handed, with the API key the deployment will require."""
    from ..config import get_config
    from ..store import open_store

    home = get_config().home_path
    key, generated = target.api_key(options)
    return DeployJob(
        name=name, options=options, store=open_store(home), home=home, model=served,
        example=x, run_id=run_id, api_key=key, generated_key=generated, tolerance=tolerance,
        verbose=verbose, started=started,
    )  # fmt: skip


def _export(target: DeployTarget, job: DeployJob, fmt: str) -> ExportResult:
    """Export the model where the target wants the artifact (or reuse the workspace's
    export of the same weights), and say what was chosen."""
    result = export_model(
        job.model, job.example, target.artifact_dir(job), name=job.name, fmt=fmt,
        tolerance=job.tolerance, api_key_hash=hash_key(job.api_key) if job.api_key else None,
        extra={"run_id": job.run_id}, cache=job.home / CACHE_DIR,
    )  # fmt: skip
    job.timings.update(result.steps)
    # progress only: the returned Deployment's card says why this format, and the parity
    if "export" in result.skipped:
        job.say(f"{job.name}: {result.skipped['export']} ({result.export_s:.1f} s).")
    else:
        job.say(f"Exported {job.name} as {result.format} in {result.export_s:.1f} s.")
    if "reuse" in result.skipped:
        job.say(f"{job.name}: {result.skipped['reuse']}.")
    return result


def deployments(status: str | None = None, target: str | None = None) -> pd.DataFrame:
    """Every deployment of the workspace: name, target, status, url, format, engine, created,
    path, error, replicas.

    A server whose process died without being stopped shows as ``lost``. A Ray
    deployment's status, replica count (``'2/2 running'``) and error (Ray's message, e.g.
    replicas that cannot be scheduled) come from the cluster's Serve REST API on each call.
    ``status`` and ``target`` keep only the deployments with that status or target.

    Example::

        >>> jupyter_ext.deployments()[["name", "status", "url"]]  # doctest: +SKIP
        >>> jupyter_ext.deployments(status="running")  # doctest: +SKIP
    """
    import pandas as pd  # here, not at import: deploy() does not need it (0.25 s)

    from ..config import get_config
    from ..store import open_store

    if target is not None and target not in target_names():
        raise ValueError(f"target must be one of {', '.join(target_names())}; got {target!r}")
    records = current_all(open_store(get_config().home_path))
    rows = [
        {**{c: getattr(r, c) for c in COLUMNS}, "replicas": _replicas(r)}
        for r in records
        if (status is None or r.status == status) and (target is None or r.target == target)
    ]
    df = pd.DataFrame(rows, columns=COLUMNS + EXTRA)
    df["created"] = pd.to_datetime(df["created"], unit="s")
    from ..tables import DeploymentsFrame  # the data as they are; only the display differs

    return DeploymentsFrame(df)


def _replicas(record: Any) -> str | None:
    """``'2/2 running'`` for a Ray deployment (as Ray last reported it), else None."""
    serve = (record.info or {}).get("serve") if record.target == "ray" else None
    return serve.get("replicas") or None if serve else None


def get_deployment(name: str, api_key: str | None = None) -> Deployment:
    """The deployment called ``name`` (``api_key``: for a server that requires one).

    Example::

        >>> jupyter_ext.get_deployment("mlp").stop()  # doctest: +SKIP
    """
    from ..config import get_config
    from ..store import open_store

    home = get_config().home_path
    store = open_store(home)
    record = current(store, name)
    if record is None:
        known = [r.name for r in store.list_deployments()]
        listed = ", ".join(known) if known else "none yet"
        raise DeploymentNotFound(f"no deployment named {name!r} in this workspace ({listed})")
    return Deployment(record, api_key=api_key, home=home)
