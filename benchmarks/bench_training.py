"""Training overhead of the toolkit against plain Lightning, measured in one run.

    .venv/bin/python -m benchmarks.bench_training [--steps 1500] [--rounds 3]

Same model (64 -> 128 -> 10 MLP, batch 64, two ``self.log`` calls per step) and steps,
interleaved over rounds:
  (a) plain Lightning in-process, logger=False, no progress bar, no checkpointing
  (b) the same with CSVLogger logging every step
  (c) this toolkit's worker logging every step into the store
  (d) this toolkit's worker with its default interval (chosen from the run's length:
      every 15th step for 1500 steps; every step below 200 steps)
Step rate is timed identically in all three (a callback between the first and the last
training step). Also: time from ``train()`` returning to the first step in the store,
cold and warm, against a bare worker that imports Lightning and runs one step; step rate
with a monitor polling against without; and this process's CPU while it polls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset


class MLP(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.log("train_loss", loss)
        self.log("train_acc", (logits.argmax(1) == y).float().mean())
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class StepTimer(L.Callback):
    """Times the steps between the first and the last training step; writes JSON.

    Two clocks: wall time, and the CPU time of the whole process (every thread, so the
    toolkit's heartbeat thread counts). On a shared 2-core machine the CPU clock is what
    stays comparable between runs; both are printed.
    """

    def __init__(self, path: str):
        self.path = path
        self.first = self.last = None
        self.n = 0

    def on_train_batch_end(self, *args):
        now = (time.perf_counter(), time.process_time())
        self.n += 1
        if self.first is None:
            self.first = now
        self.last = now

    def on_train_end(self, *args):
        wall = (self.n - 1) / (self.last[0] - self.first[0])
        cpu = (self.n - 1) / (self.last[1] - self.first[1])
        Path(self.path).write_text(json.dumps({"wall": wall, "cpu": cpu, "n": self.n}))


def data(steps: int) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64 * steps, 64, generator=g)
    y = torch.randint(0, 10, (64 * steps,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=64)


def plain(steps: int, tmp: Path, csv: bool) -> float:
    out = tmp / f"plain-{csv}-{time.time_ns()}.json"
    logger = L.pytorch.loggers.CSVLogger(tmp / "csv") if csv else False
    trainer = L.Trainer(
        max_steps=steps, logger=logger, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, log_every_n_steps=1, callbacks=[StepTimer(str(out))],
        accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(MLP(), data(steps))
    return json.loads(out.read_text())


LATENCIES: list[float] = []


def toolkit(
    steps: int, tmp: Path, monitor: bool = False, every_step: bool = True
) -> tuple[dict, float | None]:
    import jupyter_ext
    from jupyter_ext.widgets.monitor import RunMonitor

    out = tmp / f"tk-{time.time_ns()}.json"
    interval = {"log_every_n_steps": 1} if every_step else {}  # else the toolkit chooses
    run = jupyter_ext.train(
        MLP(), train_dataloaders=data(steps), max_steps=steps, enable_model_summary=False,
        callbacks=[StepTimer(str(out))], accelerator="cpu", devices=1, **interval,
    )  # fmt: skip
    cpu = None
    if monitor:
        mon = RunMonitor(run)
        c0, w0 = time.process_time(), time.perf_counter()
        # Metric-to-screen latency: how old the newest point is when the monitor first has
        # it (sampled at 20 Hz, so this adds up to 50 ms of its own).
        seen = mon.updates
        # mon.polling turns False when the monitor sees the run end: no store reads here
        # beyond the monitor's own, so this loop does not load the machine it measures.
        while mon.polling:
            if mon.updates != seen:  # the monitor just drew something new
                newest = run._store.last_metric_time(run.id)
                if newest is not None:
                    LATENCIES.append(time.time() - newest)
                seen = mon.updates
            time.sleep(0.05)
        cpu = (time.process_time() - c0) / (time.perf_counter() - w0)
        mon.close()
    else:
        run.wait(timeout=600, raise_on_failure=True)
    _wait_exit(run.row.pid)
    result = json.loads(out.read_text())
    result["interval"] = run.row.log_every_n_steps
    return result, cpu


def _wait_exit(pid: int | None) -> None:
    """The next measurement starts only once this worker has fully exited."""
    import psutil

    try:
        psutil.Process(pid).wait(timeout=60)
    except (psutil.NoSuchProcess, TypeError):
        pass


BARE = textwrap.dedent(
    """
    import sys, time
    import lightning as L, torch
    from torch.utils.data import DataLoader, TensorDataset
    class M(L.LightningModule):
        def __init__(self):
            super().__init__(); self.net = torch.nn.Linear(64, 10)
        def training_step(self, b, i):
            loss = torch.nn.functional.cross_entropy(self.net(b[0]), b[1]); self.log("l", loss); return loss
        def configure_optimizers(self): return torch.optim.SGD(self.parameters(), lr=0.1)
        def on_train_batch_end(self, *a):
            print(time.time(), flush=True); sys.exit(0)
    dl = DataLoader(TensorDataset(torch.randn(64, 64), torch.randint(0, 10, (64,))), batch_size=64)
    L.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_checkpointing=False).fit(M(), dl)
    """
)


def bare_first_step() -> float:
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", BARE], capture_output=True, text=True, check=False)
    return float(out.stdout.strip().splitlines()[-1]) - t0


def first_step_latency(warm: bool) -> float:
    import jupyter_ext
    from jupyter_ext.config import get_config
    from jupyter_ext.store import open_store
    from jupyter_ext.training.launchers import get_launcher

    get_config().warm_start = warm  # as `%config ToolkitConfig.warm_start = ...` would
    launcher = get_launcher()
    if warm:
        deadline = time.monotonic() + 120
        while not launcher.spares.ready():  # a kernel's spare starts with the extension
            if time.monotonic() > deadline:
                raise TimeoutError("spare did not get ready")
            time.sleep(0.05)
    run = jupyter_ext.train(MLP(), train_dataloaders=data(200), max_steps=200, log_every_n_steps=1)
    t0 = time.time()
    store = open_store()
    while True:
        series, _ = store.read_metrics(run.id, keys=["train_loss"])
        if series:
            latency = float(series["train_loss"].time[0]) - t0
            break
        time.sleep(0.01)
    run.wait(timeout=300)
    _wait_exit(run.row.pid)
    get_config().warm_start = False
    get_launcher()  # drops the replacement spare
    return latency


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    os.environ["JUPYTER_EXT_HOME"] = str(tmp / "ws")
    os.environ["JUPYTER_EXT_WARM_START"] = "0"
    torch.set_num_threads(1)  # the same threads in every variant (workers inherit the env below)
    os.environ["OMP_NUM_THREADS"] = "1"

    rates: dict[str, list[dict]] = {"a": [], "b": [], "c": [], "d": [], "c+monitor": []}
    cpu: list[float] = []
    for r in range(args.rounds):
        rates["a"].append(plain(args.steps, tmp, csv=False))
        rates["b"].append(plain(args.steps, tmp, csv=True))
        rates["c"].append(toolkit(args.steps, tmp)[0])
        rates["d"].append(toolkit(args.steps, tmp, every_step=False)[0])
        rate, load = toolkit(args.steps, tmp, monitor=True)
        rates["c+monitor"].append(rate)
        cpu.append(load or 0.0)
        shown = ", ".join(
            f"{k}={v[-1]['wall']:.0f}/s wall {v[-1]['cpu']:.0f}/s cpu" for k, v in rates.items()
        )
        print(f"round {r + 1}: {shown}", flush=True)

    def paired(num: str, den: str, clock: str) -> float:
        # Rounds are interleaved, so each round's ratio compares runs taken moments apart:
        # the median of those is robust to the machine's load drifting between rounds.
        return statistics.median(
            n[clock] / d[clock] for n, d in zip(rates[num], rates[den], strict=True)
        )

    for clock in ("cpu", "wall"):
        med = {k: statistics.median(x[clock] for x in v) for k, v in rates.items()}
        what = (
            "steps per CPU-second of the training process"
            if clock == "cpu"
            else "steps per wall-clock second"
        )
        ca, cb, ba = paired("c", "a", clock), paired("c", "b", clock), paired("b", "a", clock)
        print(f"\n{what}: medians of {args.rounds} rounds; ratios are medians of per-round ratios")
        print(f"  (a) plain Lightning, logger=False     {med['a']:8.0f}")
        print(f"  (b) Lightning + CSVLogger every step  {med['b']:8.0f}   (b)/(a) = {ba:.3f}")
        print(
            f"  (c) toolkit worker every step         {med['c']:8.0f}   (c)/(a) = {ca:.3f}  (target >= 0.95)"
        )
        print(f"                                                  (c)/(b) = {cb:.3f}  (target > 1)")
        print(
            f"  added per step by the toolkit: {(1 / ca - 1) * 1e6 / med['a']:.0f} us (step is {1e6 / med['a']:.0f} us)"
        )
        da = paired("d", "a", clock)
        print(
            f"  (d) toolkit worker, default interval  {med['d']:8.0f}   (d)/(a) = {da:.3f}  "
            f"(target >= 0.95, aim 0.98; every {rates['d'][-1]['interval']} steps)"
        )
        print(f"  added per step at the default interval: {(1 / da - 1) * 1e6 / med['a']:.0f} us")
        print(
            f"  (c) with a monitor polling vs without: {paired('c+monitor', 'c', clock):.3f}  (target >= 0.97)"
        )
    if LATENCIES:
        lat = sorted(LATENCIES)
        print(
            f"\nmetric logged in the worker -> drawn by the monitor: median "
            f"{1000 * statistics.median(lat):.0f} ms, max {1000 * lat[-1]:.0f} ms (target < 1 s)"
        )
    print(
        f"\nCPU of this process (the 'kernel') while a monitor polls: {100 * statistics.median(cpu):.1f}% of a core (target < 5%)"
    )

    bare = [bare_first_step() for _ in range(2)]
    cold = [first_step_latency(False) for _ in range(2)]
    warm = [first_step_latency(True) for _ in range(2)]
    b, c, w = statistics.median(bare), statistics.median(cold), statistics.median(warm)
    print("\ntime to the first step")
    print(f"  bare worker (import Lightning, one step)      {b:6.2f} s")
    print(
        f"  cold: train() returned -> first step in store {c:6.2f} s   cold/bare = {c / b:.2f} (target <= 1.2)"
    )
    print(f"  warm: train() returned -> first step in store {w:6.2f} s   (target < 1 s)")


if __name__ == "__main__":
    main()
