"""Deploying to Ray Serve against serving the same model here, measured in one run.

    .venv/bin/python -m benchmarks.bench_ray_serve [--requests 400] [--concurrency 8]

Starts its own local Ray head (``jupyter_ext.cluster.head``: free ports, its own temp dir,
2 CPUs; stopped by its process group at the end, even on failure), then:
  - deploy -> first answer, cold Serve (the first deploy starts Serve's controller and
    proxy) and warm (a second application on a running Serve; then a redeploy of new
    weights, which Serve rolls); "first answer" is ``deploy()`` returning, which is after
    Ray reports the application running and the example's answer over HTTP matched;
  - latency p50/p99 (one client, sequential) and req/s (``--concurrency`` clients)
    through Serve's HTTP proxy, against the same model deployed here (``target='local'``)
    in the same run, with the same lean client (:mod:`benchmarks._load`);
  - replica recovery: one replica of two is SIGKILLed; the time until Ray reports two
    running replicas again (the other one answers meanwhile);
  - scale 1 -> 2: ``Deployment.scale(2)`` until both run.
Goals (issue 18): warm deploy <= 6 s, recovery <= 6 s. The overhead against local serving
is Serve's default proxy: each request crosses the proxy actor and a replica actor (two
extra hops through Ray's RPC); Ray's HAProxy mode, a cluster setting, removes most of it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._load import Job, encode_post, run_job  # noqa: E402


class MLP(torch.nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
        )
        self.example_input_array = torch.randn(4, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def load(url: str, model: MLP, requests: int, conns: int) -> dict[str, float]:
    """p50/p99 (ms) of sequential single-row requests, and req/s with ``conns`` clients."""
    port = int(url.split(":")[2].split("/")[0])
    path = "/" + url.split("/", 3)[3] + "/predict" if url.count("/") > 2 else "/predict"
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((16, 64)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(rows)).numpy().tolist()
    bodies = [encode_post(port, json.dumps({"inputs": [r.tolist()]}).encode(), path) for r in rows]
    one = run_job(Job(port, bodies, expected, conns=1, per_conn=requests))
    many = run_job(Job(port, bodies, expected, conns=conns, per_conn=max(requests // conns, 20)))
    lat = [s * 1000 for s in one.latencies]
    return {
        "p50_ms": statistics.median(lat),
        "p99_ms": percentile(lat, 99),
        "rps": len(many.latencies) / (many.end - many.start),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="bench-ray-ws-"))
    os.environ["JUPYTER_EXT_HOME"] = str(home)
    os.environ["JUPYTER_EXT_WARM_START"] = "0"
    import jupyter_ext
    from jupyter_ext.cluster.head import free_port, start_head, stop_head
    from jupyter_ext.deployment.targets import ray as ray_target

    temp = tempfile.mkdtemp(prefix="rb", dir="/tmp")
    t0 = time.perf_counter()
    head = start_head(
        temp, dashboard_port=free_port(), client_port=free_port(), num_cpus=2,
        object_store_memory=80_000_000, wait_s=180,
    )  # fmt: skip
    print(f"Ray head ready in {time.perf_counter() - t0:.1f} s ({head.dashboard})", flush=True)
    deps = []
    try:
        cluster, port, cpu = head.dashboard, free_port(), 0.5
        model = MLP()
        t = time.perf_counter()
        a = jupyter_ext.deploy(
            model, "ray", name="a", cluster=cluster, port=port, num_cpus=cpu, verbose=False
        )
        cold = time.perf_counter() - t
        deps.append(a)
        t = time.perf_counter()
        b = jupyter_ext.deploy(
            MLP(1), "ray", name="b", cluster=cluster, num_cpus=cpu, verbose=False
        )
        warm = time.perf_counter() - t
        deps.append(b)
        t = time.perf_counter()
        b = jupyter_ext.deploy(
            MLP(2), "ray", name="b", cluster=cluster, num_cpus=cpu, verbose=False
        )
        redeploy = time.perf_counter() - t
        deps.append(b)
        b.stop()
        print(
            f"deploy -> first answer: cold Serve {cold:.1f} s, warm {warm:.1f} s "
            f"(goal <= 6 s), redeploy (rolling) {redeploy:.1f} s; warm steps: "
            f"{ {k: v for k, v in b.info['timings'].items() if v >= 0.05} }",
            flush=True,
        )

        local = jupyter_ext.deploy(model, "local", name="a-local", verbose=False)
        deps.append(local)
        on_ray = load(a.url or "", model, args.requests, args.concurrency)
        here = load(local.url or "", model, args.requests, args.concurrency)
        local.stop()
        print(
            f"one row, {args.requests} sequential requests and {args.concurrency} concurrent "
            "clients:\n"
            f"  Ray Serve: p50 {on_ray['p50_ms']:.2f} ms, p99 {on_ray['p99_ms']:.2f} ms, "
            f"{on_ray['rps']:.0f} req/s\n"
            f"  local:     p50 {here['p50_ms']:.2f} ms, p99 {here['p99_ms']:.2f} ms, "
            f"{here['rps']:.0f} req/s\n"
            f"  Serve/local: p50 x{on_ray['p50_ms'] / here['p50_ms']:.1f}, "
            f"p99 x{on_ray['p99_ms'] / here['p99_ms']:.1f}, "
            f"req/s x{on_ray['rps'] / here['rps']:.2f}",
            flush=True,
        )

        t = time.perf_counter()
        a.scale(2)
        scale = time.perf_counter() - t
        record = jupyter_ext.get_deployment("a")._record
        pids = ray_target.app_status(record).pids
        os.kill(pids[0], signal.SIGKILL)
        t = time.perf_counter()
        deadline = t + 120
        while True:
            st = ray_target.app_status(record)
            if st.replicas == {"RUNNING": 2} and pids[0] not in st.pids:
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"no recovery in 120 s: {st}")
            time.sleep(0.05)
        recovery = time.perf_counter() - t
        print(
            f"scale 1 -> 2: {scale:.1f} s; a SIGKILLed replica running again after "
            f"{recovery:.1f} s (goal <= 6 s; Serve's health check every "
            f"{ray_target.HEALTH_CHECK_S:.0f} s finds it)",
            flush=True,
        )
        a.stop()
    finally:
        for dep in deps:
            try:
                dep.stop()
            except Exception as exc:  # the head goes anyway; say what could not be stopped
                print(f"could not stop {dep.name}: {exc}", file=sys.stderr)
        stop_head(head.pid, head.started)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
