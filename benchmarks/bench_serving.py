"""Serving: latency, throughput and start time of a deployment, against bare servers.

    .venv/bin/python -m benchmarks.bench_serving [--requests 500] [--per-client 250] [--rounds 10]

The model is the MLP 64 -> 256 -> 256 -> 10. Every server runs at once on 127.0.0.1 and the
measurements are interleaved round by round (the machine is shared: read the ratios):

* (a)  ours: ``jupyter_ext.deploy`` with the default engine (FastAPI on uvicorn), ``auto``
       format; also (a, eager) with ``format="pickle"``, the same eager predict as (b)
* (a') ours with ``engine="litserve"``
* (b)  a bare FastAPI ``async def`` + uvicorn server (the anchor), ``benchmarks._bare_fastapi``
* (c)  a bare LitServe server, ``benchmarks._bare_litserve``
* (d)  ``mlflow models serve``: only if mlflow is installed (it is not in the dev environment)
* (e)  in-process: JSON encode, decode, model, encode, decode (the floor)

p50/p99 latency over ``--requests`` sequential single-row requests; throughput with 4
concurrent clients (``--per-client`` requests each; the median of the rounds); deploy-to-healthy (process start to the
first 200 on the health endpoint); and the predict cost per format at batch 1 and 64.
Requests go to 127.0.0.1 only, in bounded loops.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


class Target:
    """A server under test: where it listens and how its numbers came out."""

    def __init__(self, label: str, url: str, healthy_s: float | None) -> None:
        self.label, self.url, self.healthy_s = label, url, healthy_s
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.latencies: list[float] = []
        self.throughputs: list[float] = []


def _bodies(n: int = 64) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [json.dumps({"inputs": [rng.standard_normal(64).tolist()]}).encode() for _ in range(n)]


def _call(conn: http.client.HTTPConnection, body: bytes) -> None:
    conn.request("POST", "/predict", body, {"content-type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{resp.status}: {data[:200]!r}")
    json.loads(data)


def sequential(t: Target, bodies: list[bytes], n: int) -> None:
    conn = http.client.HTTPConnection(t.host, t.port, timeout=30)
    for i in range(n):
        t0 = time.perf_counter()
        _call(conn, bodies[i % len(bodies)])
        t.latencies.append(time.perf_counter() - t0)
    conn.close()


def concurrent(t: Target, bodies: list[bytes], clients: int, per_client: int) -> None:
    conns = [http.client.HTTPConnection(t.host, t.port, timeout=30) for _ in range(clients)]
    for c in conns:
        _call(c, bodies[0])  # connect before the clock starts
    start = threading.Barrier(clients + 1)

    def work(conn: http.client.HTTPConnection) -> None:
        start.wait()
        for i in range(per_client):
            _call(conn, bodies[i % len(bodies)])

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    t.throughputs.append(clients * per_client / (time.perf_counter() - t0))
    for c in conns:
        c.close()


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


def start_bare(module: str, state: Path, procs: list[subprocess.Popen]) -> tuple[str, float]:
    from jupyter_ext.deployment.local import reserve_port

    sock = reserve_port("127.0.0.1", None)
    port = sock.getsockname()[1]
    sock.close()  # these servers bind the port themselves
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{module}", str(port), str(state)],
        cwd=Path(__file__).resolve().parents[1],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", proc)
    return url, time.perf_counter() - t0


def in_process_floor(model: Any, bodies: list[bytes], n: int) -> list[float]:
    import torch

    times = []
    for i in range(n):
        t0 = time.perf_counter()
        data = json.loads(bodies[i % len(bodies)])
        with torch.inference_mode():
            y = model(torch.tensor(data["inputs"], dtype=torch.float32))
        json.loads(json.dumps({"outputs": y.tolist()}).encode())
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
            times = []
            for _ in range(reps):
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


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=500, help="sequential requests per server")
    p.add_argument("--per-client", type=int, default=250, help="requests per concurrent client")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=10, help="interleaving rounds")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    os.environ["JUPYTER_EXT_HOME"] = str(work / "ws")
    import torch

    import jupyter_ext
    from benchmarks._bare_fastapi import make_mlp

    torch.manual_seed(0)
    model = make_mlp().eval()
    state = work / "mlp.pt"
    torch.save(model.state_dict(), state)
    example = torch.randn(4, 64)
    bodies = _bodies()
    procs: list[subprocess.Popen] = []
    deps: list[Any] = []
    targets: list[Target] = []
    try:
        t0 = time.perf_counter()
        a = jupyter_ext.deploy(model, name="bench", example=example, verbose=False)
        deploy_s = time.perf_counter() - t0
        deps.append(a)
        targets.append(Target(f"(a) ours, fastapi, auto={a.format}", a.url, a.info["healthy_s"]))
        eager = jupyter_ext.deploy(
            model, name="bench-eager", example=example, format="pickle", verbose=False
        )
        deps.append(eager)
        targets.append(
            Target("(a) ours, fastapi, pickle (eager)", eager.url, eager.info["healthy_s"])
        )
        lit = jupyter_ext.deploy(
            model, name="bench-lit", example=example, format=a.format, engine="litserve",
            verbose=False,
        )  # fmt: skip
        deps.append(lit)
        targets.append(Target(f"(a') ours, litserve, {a.format}", lit.url, lit.info["healthy_s"]))
        url, healthy = start_bare("_bare_fastapi", state, procs)
        targets.append(Target("(b) bare FastAPI async + uvicorn", url, healthy))
        url, healthy = start_bare("_bare_litserve", state, procs)
        targets.append(Target("(c) bare LitServe", url, healthy))
        mlflow = importlib.util.find_spec("mlflow") is not None

        for t in targets:  # warm up: first requests pay lazy imports and allocations
            sequential(t, bodies, 50)
            t.latencies.clear()
        per_round = max(1, args.requests // args.rounds)
        per_client = max(1, args.per_client // args.rounds)
        floor: list[float] = []
        for _ in range(args.rounds):
            for t in targets:
                sequential(t, bodies, per_round)
                concurrent(t, bodies, args.clients, per_client)
            floor += in_process_floor(model, bodies, per_round)
        respawn = respawn_healthy(a, 3)
        costs = predict_costs(model, work)
    finally:
        for d in deps:
            d.stop()
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)

    print(
        f"Serving MLP 64->256->256->10, single-row requests: {args.requests} sequential, "
        f"{args.clients} clients x {args.per_client} (interleaved in {args.rounds} rounds)"
    )
    print(f"{'server':40} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>7} {'healthy s':>10}")
    for t in targets:
        healthy = f"{t.healthy_s:.2f}" if t.healthy_s is not None else "-"
        print(
            f"{t.label:40} {pct(t.latencies, 50):7.2f} {pct(t.latencies, 99):7.2f} "
            f"{statistics.median(t.throughputs):7.0f} {healthy:>10}"
        )
    if mlflow:
        print("(d) mlflow models serve: installed, but not measured by this script")
    else:
        print("(d) mlflow models serve: skipped (mlflow is not installed)")
    print(f"{'(e) in-process JSON + model (floor)':40} {pct(floor, 50):7.2f} {pct(floor, 99):7.2f}")

    a, a_eager, a_lit, b, c = targets
    thr = {t.label: statistics.median(t.throughputs) for t in targets}

    def ratio(name: str, value: float, target: str, ok: bool) -> None:
        print(f"  {name:48} {value:6.2f}  (target {target}: {'met' if ok else 'MISSED'})")

    print("Ratios (anchor (b), measured in this run):")
    r = pct(a.latencies, 50) / pct(b.latencies, 50)
    ratio("(a) p50 / (b) p50", r, "<= 1.1", r <= 1.1)
    r = thr[a.label] / thr[b.label]
    ratio("(a) req/s / (b) req/s", r, ">= 0.9", r >= 0.9)
    r = pct(a_eager.latencies, 50) / pct(b.latencies, 50)
    print(f"  {'(a, eager) p50 / (b) p50 (same predict as b)':48} {r:6.2f}")
    r = pct(a.latencies, 50) / pct(c.latencies, 50)
    ratio("(a) p50 / (c) p50", r, "< 1", r < 1)
    r = thr[a.label] / thr[c.label]
    ratio("(a) req/s / (c) req/s", r, "> 1", r > 1)
    r = pct(a_lit.latencies, 50) / pct(c.latencies, 50)
    ratio("(a') p50 / (c) p50", r, "<= 1.1", r <= 1.1)
    med = statistics.median(respawn)
    print(
        f"Deploy-to-healthy, default engine ({a.label.split('=')[1]}): median {med:.2f} s over "
        f"{len(respawn)} starts ({', '.join(f'{s:.2f}' for s in respawn)}) "
        f"(target < 3 s: {'met' if med < 3 else 'MISSED'}); the whole deploy() call, export of "
        f"every candidate format included: {deploy_s:.1f} s"
    )
    print("Predict cost, median us (in-process; our runtime's predictors, numpy in and out):")
    print(f"  {'format':32} {'batch 1':>8} {'batch 64':>9}")
    for label, by_batch in costs.items():
        print(f"  {label:32} {by_batch[1]:8.1f} {by_batch[64]:9.1f}")


if __name__ == "__main__":
    main()
