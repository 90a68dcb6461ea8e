"""Serving: latency and req/s at 1, 4 and 16 clients, batching on and off, against bare servers.

    .venv/bin/python -m benchmarks.bench_serving [--requests 500] [--per-client 400]
        [--rounds 5] [--clients 1,4,16] [--client-procs 2] [--max-seconds 0.3]
        [--before REV|none]

The model is the MLP 64 -> 256 -> 256 -> 10; every request is one row, ``{"inputs": [[64
floats]]}``. Every server runs at once on 127.0.0.1 and the measurements are interleaved
round by round (the machine is shared: read the ratios). Rows:

* (a)  ours: ``jupyter_ext.deploy`` with the default engine (FastAPI on uvicorn), ``auto``
       format, no batching
* (a, batched) the same with dynamic batching: ``max_batch_size=16, batch_timeout_ms=0``
       (only requests already queued are stacked; a lone request waits for nothing)
* (a, eager) ``format="pickle"``: the same eager torch predict as (b)
* (a0) ours as it was before the serving work of this release (``--before REV``, default
       ``d35e6d1``): that revision's server, from a temporary git worktree, serving the same
       artifact: the anchor of the batching target ("twice the throughput of before")
* (a') ours with ``engine="litserve"``, without and with ``max_batch_size=16``
* (b)  a bare FastAPI ``async def`` + uvicorn server (the anchor), ``benchmarks._bare_fastapi``
* (c)  a bare LitServe server, ``benchmarks._bare_litserve``, without and with LitServe's
       own batching (16, ``batch_timeout=0``)
* rows marked ``*`` (LitServe batching with ``batch_timeout=0``: its batch loop polls the
       queue without blocking, a core busy even while idle) are started after the others
       and measured each alone, so as not to slow the rest
* (d)  ``mlflow models serve --env-manager local`` of ``mlflow.pytorch.save_model``
       (``benchmarks._mlflow_model``): only when mlflow is installed in ``.bench/mlflow``
       (``make bench-mlflow``), apart from the dev environment
* (e)  the floor, in this process: JSON decode of the request, the eager model, JSON encode
       and decode of the answer, with the JSON library our server's protocol module uses

The client is ``benchmarks._load``: keep-alive raw sockets, pre-encoded requests, every
answer checked (status, shape, values); concurrent clients spread over ``--client-procs``
processes (one process for one client). Columns: p50/p99 latency at 1 client (``--requests``
sequential requests); req/s and p99 at each higher client count (``--per-client`` requests
per client, req/s the median of the rounds; each measurement stops early after
``--max-seconds``, so a slow server costs no more time than a fast one); deploy-to-healthy (process start to the first
200 on the health endpoint). Then the ratios with their targets, the ``deploy()`` time split
into its steps (cold, and again for the same weights), deploy-to-healthy of fresh processes,
and the predict cost per format at batch 1 and 64. Requests go to 127.0.0.1 only, in
bounded loops.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._load import LoadPool, encode_post

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_DIR = ROOT / ".bench" / "mlflow"  # make bench-mlflow; git-ignored
BATCH = 16  # max_batch_size of every batched row


@dataclass
class Target:
    """A server under test: where it listens and how its numbers came out."""

    label: str
    port: int
    healthy_s: float | None
    path: str = "/predict"
    key: str = ""  # what the ratios call it: a, a-batched, a-eager, a', b, c, d, ...
    stop: Callable[[], None] | None = None
    latencies: dict[int, list[float]] = field(default_factory=dict)  # clients -> seconds
    throughputs: dict[int, list[float]] = field(default_factory=dict)  # clients -> req/s per round

    @classmethod
    def of(cls, dep: Any) -> Target:
        """The target a ``jupyter_ext.deploy`` deployment serves."""
        port = int(dep.url.rsplit(":", 1)[1])
        return cls("", port, dep.info.get("healthy_s"), stop=dep.stop)

    def p(self, clients: int, q: float) -> float:
        """The ``q``th percentile latency at ``clients``, in milliseconds."""
        return float(np.percentile(self.latencies[clients], q)) * 1e3

    def rps(self, clients: int) -> float:
        return statistics.median(self.throughputs[clients])


class Requests:
    """The request bodies, encoded once per server, and the answers expected to them."""

    def __init__(self, model: Any, n: int = 64) -> None:
        import torch

        rng = np.random.default_rng(0)
        self.rows = [rng.standard_normal(64).tolist() for _ in range(n)]
        self.bodies = [json.dumps({"inputs": [row]}).encode() for row in self.rows]
        with torch.inference_mode():
            self.expected = model(torch.tensor(self.rows, dtype=torch.float32)).tolist()
        self._encoded: dict[tuple[int, str], list[bytes]] = {}

    def encoded(self, t: Target) -> list[bytes]:
        key = (t.port, t.path)
        if key not in self._encoded:
            self._encoded[key] = [encode_post(t.port, b, t.path) for b in self.bodies]
        return self._encoded[key]


def measure(
    pool: LoadPool,
    t: Target,
    reqs: Requests,
    clients: int,
    per_client: int,
    offset: int,
    max_seconds: float = 60.0,
) -> None:
    latencies, rps = pool.run(
        t.port, reqs.encoded(t), reqs.expected, clients, per_client, offset, max_seconds
    )
    t.latencies.setdefault(clients, []).extend(latencies)
    t.throughputs.setdefault(clients, []).append(rps)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> float:
    """Seconds from now until ``url`` answers 200 (polling every 20 ms)."""
    import httpx

    t0 = time.perf_counter()
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            try:
                if client.get(url).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.02)  # polling interval
    raise RuntimeError(f"{url} not healthy after {timeout} s")


def free_port() -> int:
    from jupyter_ext.deployment.local import reserve_port

    sock = reserve_port("127.0.0.1", None)
    port = sock.getsockname()[1]
    sock.close()  # these servers bind the port themselves
    return port


def kill(proc: subprocess.Popen) -> None:
    """Stop a server started by :func:`start_server`, its children with it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start_server(
    argv: list[str], health: str, procs: list[subprocess.Popen], port: int, **popen: Any
) -> float:
    """Start a server process (in its own session: stopping it stops its children); the
    seconds until ``health`` answers 200."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, **popen,
    )  # fmt: skip
    procs.append(proc)
    wait_http(f"http://127.0.0.1:{port}{health}", proc)
    return time.perf_counter() - t0


def start_bare(module: str, state: Path, procs: list[subprocess.Popen], *extra: str) -> Target:
    port = free_port()
    argv = [sys.executable, "-m", f"benchmarks.{module}", str(port), str(state), *extra]
    healthy = start_server(argv, "/health", procs, port)
    proc = procs[-1]
    return Target("", port, healthy, stop=lambda: kill(proc))


def start_mlflow(state: Path, work: Path, procs: list[subprocess.Popen]) -> Target:
    """``mlflow models serve`` of the model saved by ``benchmarks._mlflow_model``, with
    mlflow's own install on the path of its processes only."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(MLFLOW_DIR), str(ROOT)])
    # mlflow runs `uvicorn` from PATH: the venv's, which imports mlflow from PYTHONPATH
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    out = work / "mlflow-model"
    saved = subprocess.run(
        [sys.executable, "-m", "benchmarks._mlflow_model", str(state), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if saved.returncode != 0:
        raise RuntimeError(f"saving the model failed: {saved.stderr.strip()[-300:]}")
    port = free_port()
    argv = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", str(out),
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    healthy = start_server(argv, "/health", procs, port, env=env)
    return Target("", port, healthy, path="/invocations")


def start_before(rev: str, artifact: Path, work: Path, procs: list[subprocess.Popen]) -> Target:
    """The server of revision ``rev`` of this project (a temporary git worktree, removed
    when the run ends) serving ``artifact``: how fast serving was before."""
    tree = work / f"before-{rev}"
    made = subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), rev],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if made.returncode != 0:
        raise RuntimeError(f"git worktree add {rev}: {made.stderr.strip()[-200:]}")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # that tree's jupyter_ext, not the installed one
    port = free_port()
    argv = [
        sys.executable, "-m", "jupyter_ext.deployment.server", str(artifact),
        "--port", str(port),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=tree, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    procs.append(proc)
    wait_http(f"http://127.0.0.1:{port}/v2/health/ready", proc)
    healthy = time.perf_counter() - t0

    def stop() -> None:
        kill(proc)
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, timeout=60)

    return Target("", port, healthy, stop=stop)


def mlflow_version() -> str:
    """``"3.17.2 "``: the version of mlflow in ``.bench/mlflow``, if any, and a space."""
    found = sorted(MLFLOW_DIR.glob("mlflow-*.dist-info"))
    return found[0].name.removesuffix(".dist-info").split("-")[1] + " " if found else ""


def server_json() -> tuple[str, Callable[[bytes], Any], Callable[[Any], bytes]]:
    """``(name, loads, dumps)`` of the JSON library our server's protocol module imports
    (the floor is computed with it), else the standard library's."""
    from jupyter_ext.deployment import protocol

    names = vars(protocol)
    if "orjson" in names:
        orjson = names["orjson"]
        return "orjson", orjson.loads, orjson.dumps
    if "ujson" in names:
        ujson = names["ujson"]
        return "ujson", ujson.loads, lambda doc: ujson.dumps(doc).encode()
    if "rapidjson" in names:
        rapidjson = names["rapidjson"]
        return "rapidjson", rapidjson.loads, lambda doc: rapidjson.dumps(doc).encode()
    return "json (stdlib)", json.loads, lambda doc: json.dumps(doc).encode()


def in_process_floor(
    model: Any, bodies: list[bytes], n: int, loads: Callable, dumps: Callable
) -> list[float]:
    import torch

    times = []
    for i in range(n):
        t0 = time.perf_counter()
        data = loads(bodies[i % len(bodies)])
        with torch.inference_mode():
            y = model(torch.tensor(data["inputs"], dtype=torch.float32))
        loads(dumps({"outputs": y.tolist()}))
        times.append(time.perf_counter() - t0)
    return times


def predict_costs(model: Any, work: Path) -> dict[str, dict[int, float]]:
    """Median microseconds per predict, per format, at batch 1 and 64."""
    import torch

    from jupyter_ext.deployment.export import export_model
    from jupyter_ext.deployment.runtime import load_predictor

    x4 = torch.randn(4, 64)
    runners: dict[str, Any] = {}

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    runners["eager (torch)"] = eager
    for fmt, label in (("pt2", "pt2 (torch.export program)"), ("onnx", "onnx (onnxruntime)")):
        res = export_model(model, x4, work / f"cost-{fmt}", name="cost", fmt=fmt)
        runners[label] = load_predictor(res.directory, trusted_root=work)
    out: dict[str, dict[int, float]] = {}
    # onnxruntime last: its idle threads spin for a while and would slow the torch timings
    for label, fn in runners.items():
        out[label] = {}
        for batch, reps in ((1, 2000), (64, 500)):
            x = np.random.default_rng(batch).standard_normal((batch, 64)).astype(np.float32)
            for _ in range(20):
                fn(x)
            times: list[float] = []
            stop_at = time.perf_counter() + 2.0  # a slow format gets fewer repetitions
            while len(times) < reps and time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                fn(x)
                times.append(time.perf_counter() - t0)
            out[label][batch] = statistics.median(times) * 1e6
    return out


def respawn_healthy(dep: Any, times: int) -> list[float]:
    """Start-to-healthy of fresh processes serving ``dep``'s artifact (the deploy path)."""
    from jupyter_ext.deployment import local

    found = []
    for i in range(times):
        sock = local.reserve_port("127.0.0.1", None)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        t0 = time.perf_counter()
        proc = local.spawn(
            dep.path, host="127.0.0.1", engine="fastapi", sock=sock,
            log_path=dep.path / f"respawn-{i}.log",
        )  # fmt: skip
        sock.close()
        try:
            health = local.wait_healthy(url, proc, dep.path / f"respawn-{i}.log")
            if not health.healthy:
                raise RuntimeError(f"{health.describe()}:\n{health.log_tail}")
            found.append(time.perf_counter() - t0)
        finally:
            local.stop_server(proc.pid)
    return found


def timed_deploy(model: Any, **kwargs: Any) -> tuple[Any, float]:
    """A deployment and the seconds its ``deploy()`` call took."""
    import jupyter_ext

    t0 = time.perf_counter()
    dep = jupyter_ext.deploy(model, verbose=False, **kwargs)
    return dep, time.perf_counter() - t0


def describe_timings(dep: Any) -> str:
    """The deploy steps' seconds the deployment recorded (``info["timings"]``), if any."""
    timings = dep.info.get("timings")
    if not isinstance(timings, dict) or not timings:
        return "no step timings recorded (info['timings'] absent)"
    return ", ".join(
        f"{step} {s:.2f} s" if isinstance(s, (int, float)) else f"{step} {s}"
        for step, s in timings.items()
    )


def optional(
    skipped: dict[str, str], key: str, label: str, start: Callable[[], Target]
) -> Target | None:
    """``start()``'s target, or None with the reason in ``skipped`` when it failed (a
    comparison row missing must not cost the rest of the run)."""
    try:
        t = start()
    except Exception as exc:  # reported in the output, with the row it cost
        reason = " ".join(str(exc).split())[:200]
        skipped[label] = f"failed: {type(exc).__name__}: {reason}"
        return None
    t.key, t.label = key, label
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=500, help="sequential requests per server")
    p.add_argument(
        "--per-client", type=int, default=400, help="requests per client at each client count > 1"
    )
    p.add_argument("--clients", default="1,4,16", help="client counts, comma-separated")
    p.add_argument("--client-procs", type=int, default=2, help="client processes (2 cores here)")
    p.add_argument("--rounds", type=int, default=5, help="interleaving rounds")
    p.add_argument(
        "--before",
        default="d35e6d1",
        help="git revision whose server is row (a0), the batching target's anchor (none: skip)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=0.3,
        help="at most this long per server, client count and round (a slow server sends "
        "fewer requests)",
    )
    args = p.parse_args()
    counts = sorted({int(c) for c in args.clients.split(",")} | {1})
    many = [c for c in counts if c > 1]

    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    os.environ["JUPYTER_EXT_HOME"] = str(work / "ws")
    import torch

    from benchmarks._bare_fastapi import make_mlp

    torch.manual_seed(0)
    model = make_mlp().eval()
    state = work / "mlp.pt"
    torch.save(model.state_dict(), state)
    example = torch.randn(4, 64)
    reqs = Requests(model)
    json_name, loads, dumps = server_json()
    procs: list[subprocess.Popen] = []
    deps: list[Any] = []
    targets: list[Target] = []
    skipped: dict[str, str] = {}
    with LoadPool(args.client_procs) as pool:
        try:
            cold, cold_s = timed_deploy(model, name="bench", example=example)
            deps.append(cold)
            # the same weights again (the redeploy replaces the cold server, on its port)
            a, again_s = timed_deploy(model, name="bench", example=example)
            deps.append(a)
            targets.append(Target.of(a))
            targets[0].key, targets[0].label = "a", f"(a) ours, fastapi, auto={a.format}"
            ours = dict(example=example, format=a.format)
            batching = dict(max_batch_size=BATCH, batch_timeout_ms=0)

            def deployed(**kwargs: Any) -> Callable[[], Target]:
                def start() -> Target:
                    dep, _ = timed_deploy(model, **kwargs)
                    deps.append(dep)
                    return Target.of(dep)

                return start

            rows: list[tuple[str, str, Callable[[], Target]]] = [
                ("a-batched", f"(a) ours, fastapi, batched {BATCH}",
                 deployed(name="bench-batch", **ours, **batching)),
                ("a0", f"(a0) ours before ({args.before}), {a.format}",
                 lambda: start_before(args.before, Path(a.path), work, procs)),
                ("a-eager", "(a) ours, fastapi, pickle (eager)",
                 deployed(name="bench-eager", example=example, format="pickle")),
                ("a'", f"(a') ours, litserve, {a.format}",
                 deployed(name="bench-lit", engine="litserve", **ours)),
                ("a'-batched", f"(a') ours, litserve, batched {BATCH} *",
                 deployed(name="bench-lit-batch", engine="litserve", **ours, **batching)),
                ("b", "(b) bare FastAPI async + uvicorn",
                 lambda: start_bare("_bare_fastapi", state, procs)),
                ("c", "(c) bare LitServe", lambda: start_bare("_bare_litserve", state, procs)),
                ("c-batched", f"(c) bare LitServe, batched {BATCH} *",
                 lambda: start_bare("_bare_litserve", state, procs, str(BATCH))),
            ]  # fmt: skip
            # LitServe's batch loop with batch_timeout=0 polls its queue without blocking: a
            # core busy even while idle, which would slow every other server measured
            # meanwhile. Those rows ("*") start after the others, each alone, and stop after.
            mlflow = f"(d) mlflow {mlflow_version()}models serve"
            if MLFLOW_DIR.is_dir():
                rows.append(("d", mlflow, lambda: start_mlflow(state, work, procs)))
            else:
                skipped[mlflow] = (
                    f"skipped: mlflow is not installed in {MLFLOW_DIR.relative_to(ROOT)} "
                    "(make bench-mlflow)"
                )
            if args.before == "none":
                rows = [row for row in rows if row[0] != "a0"]
            order = [row[0] for row in rows]
            alone = [row for row in rows if row[1].endswith("*")]
            rows = [row for row in rows if not row[1].endswith("*")]
            for key, label, start in rows:
                t = optional(skipped, key, label, start)
                if t is not None:
                    targets.append(t)

            up = time.perf_counter()

            def warm(t: Target) -> None:
                """First requests pay lazy imports and allocations: not counted."""
                measure(pool, t, reqs, 1, 50, 0)
                measure(pool, t, reqs, counts[-1], 5, 0)
                t.latencies.clear()
                t.throughputs.clear()

            for t in targets:
                warm(t)
            per_round = max(1, args.requests // args.rounds)
            per_client = max(1, args.per_client // args.rounds)
            floor: list[float] = []

            def one_round(t: Target, r: int) -> None:
                measure(pool, t, reqs, 1, per_round, r * per_round, args.max_seconds)
                for c in many:
                    measure(pool, t, reqs, c, per_client, r * per_round, args.max_seconds)

            for r in range(args.rounds):
                for t in targets:
                    one_round(t, r)
                floor += in_process_floor(model, reqs.bodies, per_round, loads, dumps)
            for key, label, start in alone:
                t = optional(skipped, key, label, start)
                if t is None:
                    continue
                targets.append(t)
                warm(t)
                for r in range(args.rounds):
                    one_round(t, r)
                if t.stop is not None:
                    t.stop()
            measured = time.perf_counter()
            respawn = respawn_healthy(a, 3)
            costs = predict_costs(model, work)
        finally:
            for d in deps:
                with contextlib.suppress(Exception):
                    d.stop()
            for t in targets:
                if t.key == "a0" and t.stop is not None:
                    t.stop()  # its worktree too
            for proc in procs:
                kill(proc)

    targets.sort(key=lambda t: ["a", *order].index(t.key))  # the rows' order, "*" or not
    report(args, counts, targets, skipped, floor, json_name)
    ratios(counts, {t.key: t for t in targets}, floor)
    print(
        f"deploy(), format auto (chose {a.format}), and its steps as the deployment records them:"
    )
    print(f"  cold:                     {cold_s:5.2f} s  ({describe_timings(cold)})")
    print(f"  again, the same weights:  {again_s:5.2f} s  ({describe_timings(a)})")
    med = statistics.median(respawn)
    print(
        f"Deploy-to-healthy, default engine ({a.format}): median {med:.2f} s over "
        f"{len(respawn)} fresh starts ({', '.join(f'{s:.2f}' for s in respawn)}) "
        f"(target < 3 s: {'met' if med < 3 else 'MISSED'})"
    )
    print("Predict cost, median us (in-process; our runtime's predictors, numpy in and out):")
    print(f"  {'format':32} {'batch 1':>8} {'batch 64':>9}")
    for label, by_batch in costs.items():
        print(f"  {label:32} {by_batch[1]:8.1f} {by_batch[64]:9.1f}")
    print(
        f"Run: {time.perf_counter() - began:.0f} s (starting servers {up - began:.0f} s, "
        f"measuring {measured - up:.0f} s)"
    )


def report(
    args: argparse.Namespace,
    counts: list[int],
    targets: list[Target],
    skipped: dict[str, str],
    floor: list[float],
    json_name: str,
) -> None:
    many = [c for c in counts if c > 1]
    print(
        f"Serving MLP 64->256->256->10, one row per request: {args.requests} sequential; "
        + ", ".join(f"{c} clients x {args.per_client}" for c in many)
        + f" (interleaved in {args.rounds} rounds of at most {args.max_seconds} s per server "
        f"and client count; {args.client_procs} client processes)"
    )
    head = f"{'server':36} {'1c p50':>7} {'1c p99':>7}"
    for c in many:
        head += f" {f'{c}c req/s':>9} {f'{c}c p99':>8}"
    print(head + f" {'healthy s':>10}")
    for t in targets:
        line = f"{t.label:36} {t.p(1, 50):7.2f} {t.p(1, 99):7.2f}"
        for c in many:
            line += f" {t.rps(c):9.0f} {t.p(c, 99):8.2f}"
        healthy = f"{t.healthy_s:.2f}" if t.healthy_s is not None else "-"
        print(line + f" {healthy:>10}")
    for label, why in skipped.items():
        print(f"{label:36} {why}")
    label = f"(e) floor: in-process, {json_name}"
    print(f"{label:36} {pct(floor, 50):7.2f} {pct(floor, 99):7.2f}")
    print("  (ms; at N clients a request's latency includes its wait behind the others')")
    if any(t.label.endswith("*") for t in targets):
        print(
            "  * measured alone, after the others: LitServe's batch loop with batch_timeout=0 "
            "keeps a core busy even while idle"
        )


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3


def ratios(counts: list[int], by: dict[str, Target], floor: list[float]) -> None:
    """The ratios and their targets, from the targets this run has."""
    many = [c for c in counts if c > 1]
    top = counts[-1]

    def line(name: str, value: float, target: str = "", ok: bool | None = None) -> None:
        verdict = f"  (target {target}: {'met' if ok else 'MISSED'})" if target else ""
        print(f"  {name:52} {value:7.2f}{verdict}")

    def per_count(name: str, num: Target, den: Target, target: str, ok: Callable) -> None:
        values = [num.rps(c) / den.rps(c) for c in many]
        shown = ", ".join(f"{v:.2f}" for v in values)
        met = all(ok(v) for v in values)
        print(f"  {name:52} {shown}  (target {target}: {'met' if met else 'MISSED'})")

    a, b, c, d, before = by["a"], by.get("b"), by.get("c"), by.get("d"), by.get("a0")
    batched, eager, lit = by.get("a-batched"), by.get("a-eager"), by.get("a'")
    print(
        "Ratios (measured in this run; req/s ratios at " + ", ".join(map(str, many)) + " clients):"
    )
    p50, fl = a.p(1, 50), pct(floor, 50)
    line("(a) p50 - (e) floor p50, ms", p50 - fl, "<= 0.25", p50 - fl <= 0.25)
    line("(a) p50, ms", p50, "<= 0.3", p50 <= 0.3)
    if batched is not None and top > 1:
        if before is not None:
            r = batched.rps(top) / before.rps(top)
            line(f"(a, batched) req/s / (a0) before, req/s at {top} clients", r, ">= 2", r >= 2)
            line(
                f"(a) unbatched req/s / (a0) before, at {top} clients", a.rps(top) / before.rps(top)
            )
            line("(a) p50 / (a0) before p50", p50 / before.p(1, 50))
        line(f"(a, batched) req/s / (a) req/s at {top} clients", batched.rps(top) / a.rps(top))
        line("(a, batched) p50 / (a) p50 at 1 client", batched.p(1, 50) / p50)
    if b is not None:
        r = p50 / b.p(1, 50)
        line("(a) p50 / (b) p50", r, "<= 1.1", r <= 1.1)
        if many:
            per_count("(a) req/s / (b) req/s", a, b, ">= 0.9", lambda v: v >= 0.9)
        if eager is not None:
            line("(a, eager) p50 / (b) p50 (same predict as b)", eager.p(1, 50) / b.p(1, 50))
    if c is not None:
        r = p50 / c.p(1, 50)
        line("(a) p50 / (c) p50", r, "< 1", r < 1)
        if many:
            per_count("(a) req/s / (c) req/s", a, c, "> 1", lambda v: v > 1)
        if lit is not None:
            r = lit.p(1, 50) / c.p(1, 50)
            line("(a') p50 / (c) p50", r, "<= 1.1", r <= 1.1)
    if d is not None:
        line("(a) p50 / (d) mlflow p50", p50 / d.p(1, 50))
        if many:
            line(f"(a) req/s / (d) mlflow req/s at {top} clients", a.rps(top) / d.rps(top))


if __name__ == "__main__":
    main()
