"""Runs on a Ray cluster against the same runs here, measured in one run.

    .venv/bin/python -m benchmarks.bench_cluster [--steps 600] [--rounds 2] [--cells 40]

Starts its own local Ray head (``jupyter_ext.cluster.head``: free ports, its own temp
dir, 2 CPUs; stopped at the end, even on failure), then, interleaved over rounds, trains
the same run (a 64 -> 256 -> 10 MLP, fixed seed, logging every step) through the local
launcher (a cold worker: warm spare off, for fairness) and on the Ray cluster:
  - steps/s from the run's own records: the worker's timestamps of its ``train_loss``
    points, after the first 10% of steps (start-up is not steps); not the wall time
    including the job's start
  - launch -> first metric: from calling ``train()`` to the first point seen in the store
    (polled every 10 ms), for a cold local worker and for a Ray job
Then kernel responsiveness: a real Jupyter kernel (jupyter_client) launches a cluster run
that logs every step, so the ``Run`` it holds drains the run's channel in that kernel; the
round trip of trivial cells (``1+1``) is timed while the run streams (p50, max).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
SKIP = 0.1  # the first steps are start-up (first batch, optimizer state), not pace


class MLP(L.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def data(steps: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64 * steps, 64, generator=g)
    y = torch.randint(0, 10, (64 * steps,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=64)


def one_run(steps: int, cluster: str) -> tuple[float, float]:
    """``(steps/s, launch -> first metric s)`` of one run, here or on the cluster."""
    import jupyter_ext

    t0 = time.time()
    run = jupyter_ext.train(
        MLP(), train_dataloaders=data(steps), max_steps=steps, log_every_n_steps=1,
        enable_model_summary=False, accelerator="cpu", devices=1, cluster=cluster,
    )  # fmt: skip
    store = run._store
    while True:
        series, _ = store.read_metrics(run.id, keys=["train_loss"])
        if series:
            first = time.time() - t0
            break
        # not `lost`: a cluster that answers slowly shows lost until it answers again
        if run.status in ("succeeded", "failed", "stopped"):
            raise RuntimeError(f"run {run.id} ended before its first metric: {run.row.error}")
        time.sleep(0.01)
    # the end, with everything in the store (a cluster run: its channel drained); not
    # run.wait(), which returns on `lost`, what a slow cluster shows until it answers
    deadline = time.monotonic() + 300
    while True:
        row = store.get_run(run.id)
        if row.status in ("succeeded", "failed", "stopped") and (
            row.cluster is None or row.cluster.get("drained")
        ):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run.id} did not end: {row.status} {row.error}")
        time.sleep(0.05)
    if row.status != "succeeded":
        raise RuntimeError(f"run {run.id} {row.status}: {row.error}")
    series, _ = store.read_metrics(run.id, keys=["train_loss"])
    times = sorted(float(t) for t in series["train_loss"].time)
    if len(times) < steps * 0.9:
        raise RuntimeError(f"only {len(times)} of {steps} points came back from {run.id}")
    times = times[int(len(times) * SKIP) :]
    return (len(times) - 1) / (times[-1] - times[0]), first


KERNEL_SETUP = """
import time, torch, lightning as L
from torch.utils.data import DataLoader, TensorDataset
import jupyter_ext
from jupyter_ext.cluster.selection import use_cluster

class Streaming(L.LightningModule):
    def __init__(self):
        super().__init__(); self.net = torch.nn.Linear(64, 10)
    def training_step(self, b, i):
        time.sleep(0.01)  # a step of ~10 ms: ~100 points a second to drain
        loss = torch.nn.functional.cross_entropy(self.net(b[0]), b[1])
        self.log("train_loss", loss); return loss
    def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.1)

use_cluster({dashboard!r}, client={client!r})
dl = DataLoader(TensorDataset(torch.randn(6400, 64), torch.randint(0, 10, (6400,))), batch_size=64)
run = jupyter_ext.train(Streaming(), train_dataloaders=dl, max_epochs=1000, log_every_n_steps=1)
"""


def kernel_cells(
    home: Path, dashboard: str, client: str, cells: int
) -> tuple[list[float], int, list[float]]:
    """Round trips (s) of ``1+1`` in a kernel that holds a streaming cluster run, how many
    metric points reached the store while they were timed, and how late (s) the points seen
    arrive: from the worker's timestamp to the store, read after every cell (the cluster
    shares this machine's clock)."""
    from jupyter_client.manager import start_new_kernel

    from jupyter_ext.store import Store

    env = {**os.environ, "JUPYTER_EXT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120, env=env)
    try:

        def run(code: str, timeout: float = 120.0) -> None:
            reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError(f"{code[:60]!r} failed in the kernel: {reply['content']}")

        run(KERNEL_SETUP.format(dashboard=dashboard, client=client))
        store = Store(home / "store.sqlite")
        (row,) = store.list_runs()

        lags: list[float] = []
        seen = [0]

        def points() -> int:
            series, _ = store.read_metrics(row.id, keys=["train_loss"])
            times = sorted(series["train_loss"].time) if series else []
            now = time.time()
            lags.extend(now - float(t) for t in times[seen[0] :])
            seen[0] = len(times)
            return len(times)

        deadline = time.monotonic() + 180
        while points() < 50:  # the job runs and the kernel's sync drains it
            if time.monotonic() > deadline:
                raise TimeoutError(f"no metrics from the kernel's cluster run {row.id}")
            time.sleep(0.1)
        before = points()
        lags.clear()  # from here on: points read within ~60 ms of arriving
        run("1+1")  # the first cell after a long one pays for the kernel's own bookkeeping
        trips = []
        for _ in range(cells):
            t0 = time.perf_counter()
            run("1+1")
            trips.append(time.perf_counter() - t0)
            points()
            time.sleep(0.05)  # a person's pace between cells, not a synchronisation
        streamed = points() - before
        run("run.stop(timeout=120)", timeout=180)
        return trips, streamed, lags
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cells", type=int, default=40)
    args = ap.parse_args()

    from jupyter_ext.cluster.head import free_port, start_head, stop_head

    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    os.environ["JUPYTER_EXT_HOME"] = str(tmp / "ws")
    os.environ["JUPYTER_EXT_WARM_START"] = "0"  # cold local workers: a Ray job has no spare
    os.environ["OMP_NUM_THREADS"] = "1"  # the same threads here, in workers and in jobs
    torch.set_num_threads(1)
    # a `timeout` or kill -TERM still runs the `finally` below, which stops the head
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # short: Ray's Unix sockets live under it (paths capped at 107 bytes)
    ray_temp = tempfile.mkdtemp(prefix="bc", dir="/tmp")
    t0 = time.monotonic()
    head = start_head(
        ray_temp, dashboard_port=free_port(), client_port=free_port(), num_cpus=2,
        object_store_memory=80_000_000, wait_s=None,
    )  # fmt: skip
    try:
        while not head.ready():
            if not head.running() or time.monotonic() - t0 > 180:
                raise RuntimeError(f"the Ray head did not start; see {head.log}")
            time.sleep(0.25)
        print(f"local Ray head ready in {time.monotonic() - t0:.1f} s ({head.dashboard})")
        from jupyter_ext.cluster.selection import use_cluster

        use_cluster(head.dashboard, client=head.client)
        results: dict[str, list[tuple[float, float]]] = {"local": [], "ray": []}
        for r in range(args.rounds):
            results["local"].append(one_run(args.steps, "local"))
            results["ray"].append(one_run(args.steps, head.dashboard))
            shown = ", ".join(
                f"{k} {v[-1][0]:.0f} steps/s, first metric {v[-1][1]:.2f} s"
                for k, v in results.items()
            )
            print(f"round {r + 1}: {shown}", flush=True)
        use_cluster("local")
        trips, streamed, lags = kernel_cells(
            tmp / "kernel-ws", head.dashboard, head.client, args.cells
        )
    finally:
        stop_head(head.pid, head.started)
        shutil.rmtree(ray_temp, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(kind: str, i: int) -> float:
        return statistics.median(x[i] for x in results[kind])

    # rounds are interleaved: each round's ratio compares runs taken moments apart
    rate_ratio = statistics.median(
        ray[0] / local[0] for ray, local in zip(results["ray"], results["local"], strict=True)
    )
    first_ratio = med("ray", 1) / med("local", 1)
    ms = sorted(1000 * t for t in trips)
    print(
        f"\n{args.steps} steps, medians of {args.rounds} rounds (steps/s: the worker's own times)"
    )
    print(f"  {'':28}{'steps/s':>10}{'launch -> 1st metric':>24}")
    print(f"  {'local launcher, cold worker':28}{med('local', 0):10.0f}{med('local', 1):22.2f} s")
    print(f"  {'Ray job on a local head':28}{med('ray', 0):10.0f}{med('ray', 1):22.2f} s")
    verdict = "met" if rate_ratio >= 0.9 else "MISSED"
    print(f"  steps/s Ray / local = {rate_ratio:.3f}  (target >= 0.9: {verdict})")
    print(f"  launch -> first metric Ray / local = {first_ratio:.2f}  (reported; no target)")
    print(
        f"\nkernel holding a streaming cluster run ({streamed} points drained while timed): "
        f"`1+1` round trip p50 {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms over "
        f"{len(ms)} cells  (target < 50 ms: {'met' if ms[-1] < 50 else 'MISSED'})"
    )
    if lags:
        lag = sorted(lags)
        print(
            f"metric point -> workspace store: median {statistics.median(lag):.2f} s, "
            f"p95 {lag[int(len(lag) * 0.95)]:.2f} s, max {lag[-1]:.2f} s over {len(lag)} points "
            f"(target: on the monitor within 2 s: {'met' if lag[-1] < 2 else 'MISSED'})"
        )


if __name__ == "__main__":
    sys.exit(main())
