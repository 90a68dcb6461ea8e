"""Deploying a causal LM as a text-generation server on the local machinery.

What ``deploy()`` hands over when given a fine-tune's ``Run``, a Hugging Face model
directory, or a transformers model with ``tokenizer=``: the model is resolved to a
directory (a run is exported through :mod:`jupyter_ext.llm.export`, an in-memory model
saved), ``textgen.json`` is written next to it, and the same server process as every local
deployment is started (its own process group, the port handed over as a bound socket,
recorded in the store with ``target='local'``, so ``%deployments``, ``%undeploy`` and the
lost-process check work unchanged). The deployment is up when the server answers a first
one-token chat or completion, so ``deploy()`` returning means the model answers.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ...procs import process_started
from .. import local
from ..export import DeployError
from ..protocol import hash_key
from ..records import check_name
from ..server import is_loopback
from .engine import TextSpec

TEXT_ENGINES = ("transformers", "vllm")


def is_text_model(x: Any) -> bool:
    """Whether ``deploy(x)`` serves text generation: a fine-tune run, a Hugging Face
    model directory, a PEFT adapter directory, or a transformers ``PreTrainedModel``.

    Example::

        >>> is_text_model("tiny-llama")  # doctest: +SKIP
        True
    """
    if isinstance(x, (str, Path)):
        p = Path(x)
        return p.is_dir() and (
            (p / "config.json").is_file() or (p / "adapter_config.json").is_file()
        )
    if _is_finetune_run(x):
        return True
    # by the class names, not isinstance: importing transformers to ask would add seconds
    # to every deploy of a plain torch model
    return type(x).__module__.startswith("peft.") or any(
        c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers.")
        for c in type(x).__mro__
    )


def _is_finetune_run(x: Any) -> bool:
    if type(x).__name__ != "Run":
        return False
    try:
        from ...llm.export import is_finetune_run
    except ImportError:
        return False
    return bool(is_finetune_run(x))


def _export_run(run: Any, out: Path, merged: bool) -> Path:
    from ...llm.export import export_run

    return Path(export_run(run, out, merged=merged))


def _adapter_base(adapter_dir: Path) -> str:
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise DeployError(f"{adapter_dir}/adapter_config.json does not name its base model")
    return str(base)


def _resolve(
    x: Any, tokenizer: Any, adapters: dict[str, Any] | None, home: Path, artifact: Path
) -> tuple[str, str | None, dict[str, str], str | None]:
    """``(model_dir, adapter_dir, {name: adapter_dir}, run_id)`` for what was given."""
    extra: dict[str, str] = {}
    run_id = None
    adapter: str | None = None
    if _is_finetune_run(x):
        run_id = x.id
        if adapters:  # the run's adapter over its base, beside the other adapters
            path = _export_run(x, artifact / "adapter", merged=False)
            adapter, model_dir = str(path), _adapter_base(path)
        else:  # merged weights: no LoRA cost per token
            model_dir = str(_export_run(x, artifact / "model", merged=True))
    elif isinstance(x, (str, Path)):
        p = Path(x).resolve()
        if (p / "adapter_config.json").is_file():
            adapter, model_dir = str(p), _adapter_base(p)
        elif (p / "config.json").is_file():
            model_dir = str(p)
        else:
            raise DeployError(f"{p} is not a Hugging Face model directory (no config.json)")
    else:
        if tokenizer is None:
            raise ValueError(
                "deploying a transformers model needs its tokenizer: deploy(model, tokenizer=tok)"
            )
        out = artifact / "model"
        model = x
        if hasattr(x, "merge_and_unload"):  # a PeftModel: merge a copy, the caller's stays
            import copy

            model = copy.deepcopy(x).merge_and_unload()
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        model_dir = str(out)
    for name, a in (adapters or {}).items():
        if _is_finetune_run(a):
            extra[name] = str(_export_run(a, artifact / f"adapter-{name}", merged=False))
        elif isinstance(a, (str, Path)) and (Path(a) / "adapter_config.json").is_file():
            extra[name] = str(Path(a).resolve())
        else:
            raise ValueError(
                f"adapters[{name!r}] must be a fine-tune run or a PEFT adapter directory "
                f"(with adapter_config.json); got {a!r}"
            )
    return model_dir, adapter, extra, run_id


def _default_name(x: Any) -> str:
    if _is_finetune_run(x):
        return str(x.name)
    if isinstance(x, (str, Path)):
        return Path(x).resolve().name
    return str(getattr(getattr(x, "config", None), "model_type", None) or "llm")


def deploy_text(
    x: Any,
    *,
    name: str | None,
    tokenizer: Any = None,
    adapters: dict[str, Any] | None = None,
    engine: str = "transformers",
    host: str = "127.0.0.1",
    port: int | None = None,
    api_key: str | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    timeout: float = 120.0,
    verbose: bool = True,
) -> Any:
    """Serve a causal LM over the OpenAI API from a local server process; the
    :class:`~..client.Deployment` once it answered a first request.

    Called by ``deploy()`` for text models (see its docstring).

    Example::

        >>> dep = deploy_text("tiny-llama", name="tiny")  # doctest: +SKIP
        >>> dep.chat([{"role": "user", "content": "Hi"}], max_tokens=8)  # doctest: +SKIP
    """
    from ...config import get_config
    from ...store import open_store
    from ..client import Deployment
    from ..targets import get_target

    started = time.perf_counter()
    if engine == "fastapi":
        engine = "transformers"  # deploy()'s default engine: transformers for text
    if engine not in TEXT_ENGINES:
        raise ValueError(f"engine for a text model must be one of {', '.join(TEXT_ENGINES)}")
    if engine == "vllm":
        from .vllm_engine import check_vllm

        check_vllm(device)
    name = check_name(name or _default_name(x))
    for extra in adapters or {}:
        check_name(extra)
        if extra == name:
            raise ValueError(f"adapter name {extra!r} is the deployment's own name")
    generated = False
    if api_key is None and not is_loopback(host):
        api_key, generated = secrets.token_urlsafe(24), True
    home = get_config().home_path
    store = open_store(home)
    artifact = home / "deployments" / f"{name}-{uuid.uuid4().hex[:6]}"
    artifact.mkdir(parents=True)
    try:
        model_dir, adapter, extra, run_id = _resolve(x, tokenizer, adapters, home, artifact)
    except BaseException:
        shutil.rmtree(artifact, ignore_errors=True)
        raise
    spec = TextSpec(
        name=name, model_dir=model_dir, adapter=adapter, adapters=extra, engine=engine,
        device=device, dtype=dtype, api_key_sha256=hash_key(api_key) if api_key else None,
    )  # fmt: skip
    spec.write(artifact)
    resolved = time.perf_counter() - started

    previous = store.get_deployment(name)
    keep = None
    if previous is not None:
        if previous.target == "local" and local.stop_server(previous.pid, previous.pid_started):
            if verbose:
                print(f"Stopped the previous {name} (pid {previous.pid}).", flush=True)
            keep = previous.port
        elif previous.target != "local":
            get_target(previous.target).stop(store, previous)
    sock = None
    if port is not None:
        sock = local.reserve_port(host, port)
    elif keep and local.port_free(host, keep):  # a redeploy keeps its port
        with contextlib.suppress(DeployError):
            sock = local.reserve_port(host, keep)
    if sock is None:
        sock = local.reserve_port(host, None)
    bound = sock.getsockname()[1]
    url = local.server_url(host, bound)
    info: dict[str, Any] = {
        "kind": "text",
        "models": spec.model_names(),
        "model_dir": model_dir,
        "adapters": {name: adapter, **extra} if adapter else dict(extra),
        "api_key_required": api_key is not None,
        "device": device,
    }
    store.upsert_deployment(
        name, target="local", engine=engine, format="hf-causal-lm", status="starting", url=url,
        host=host, port=bound, path=str(artifact), log_path=str(artifact / "server.log"),
        run_id=run_id, info=info,
    )  # fmt: skip
    if previous is not None and previous.path and previous.path != str(artifact):
        get_target(previous.target).discard(home, previous)
    options = ["--device", device] if device != "cpu" else []
    warm = get_config().warm_start
    try:
        t0 = time.perf_counter()
        proc = None
        if warm:  # a spare with everything imported, if this kernel has one
            from .spare import pool

            proc = pool().hand_over(
                artifact, sock, host=local.bind_host(host), log_path=artifact / "server.log",
                api_key=api_key, options=options,
            )  # fmt: skip
        took_spare = proc is not None
        if proc is None:
            proc = local.spawn(
                artifact, host=host, engine="fastapi", log_path=artifact / "server.log",
                sock=sock, api_key=api_key, options=options,
            )  # fmt: skip
    except OSError as exc:
        store.update_deployment(
            name, status="failed", ended=time.time(), error=f"cannot start the server: {exc}"
        )
        raise DeployError(f"deployment {name!r} failed: cannot start the server: {exc}") from None
    finally:
        sock.close()
    spawned = time.perf_counter() - t0
    if warm:  # the next text deploy of this kernel starts warm
        from .spare import pool

        threading.Thread(target=pool().ensure, name="text-spare", daemon=True).start()
    store.update_deployment(name, pid=proc.pid, pid_started=process_started(proc.pid))

    def fail(message: str, tail: str = "") -> DeployError:
        local.stop_server(proc.pid, process_started(proc.pid))
        error = message + (f"; its log ends with:\n{tail}" if tail else "")
        store.update_deployment(name, status="failed", ended=time.time(), error=error)
        return DeployError(f"deployment {name!r} failed: {error}")

    try:
        health = local.wait_healthy(url, proc, artifact / "server.log", timeout=timeout)
        if not health.healthy:
            raise fail(health.describe(), health.log_tail)
        record = store.get_deployment(name)
        dep = Deployment(record, api_key=api_key, home=home)
        t1 = time.perf_counter()
        try:
            dep.complete("Hi", max_tokens=1, temperature=0)  # a first answer, over HTTP
        except Exception as exc:
            raise fail(f"the server did not answer a first request: {exc}", dep.logs(30)) from None
        first = time.perf_counter() - t1
    except KeyboardInterrupt:
        raise fail("interrupted before it answered") from None
    timings = {
        "resolve": round(resolved, 3), "start": round(spawned, 3),
        "healthy": round(health.seconds, 3), "first_answer": round(first, 3),
        "total": round(time.perf_counter() - started, 3),
    }  # fmt: skip
    info.update(healthy_s=round(health.seconds, 3), timings=timings, warm=took_spare)
    store.update_deployment(name, status="running", info=info)
    dep = Deployment(store.get_deployment(name), api_key=api_key, home=home)
    if verbose:
        print(
            f"Serving {', '.join(spec.model_names())} at {url}/v1 (OpenAI API): first answer "
            f"{timings['total']:.1f} s after deploy.",
            flush=True,
        )
        if generated:
            print(
                f"{host} is not loopback, so an API key is required; it is shown once: "
                f"{api_key}\nSend it as Authorization: Bearer KEY (openai.OpenAI(api_key=...)).",
                flush=True,
            )
    return dep
