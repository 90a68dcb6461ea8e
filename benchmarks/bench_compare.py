"""Comparison at scale: drawing many long curves, and loading a long metric from the store.

    .venv/bin/python -m benchmarks.bench_compare [--runs 10] [--points 200000] [--repeat 3]

Measured in one process, each against an anchor measured in the same run:

* draw: ``runs`` x ``points`` points of one metric (target < 0.5 s for 10 x 200k)
    - anchor: raw matplotlib, a new figure with every point plotted and rendered to PNG
    - ours, static: ``LiveChart.figure()`` (min/max downsampling, then the same render)
    - ours, live: the kernel's side of a browser view: the downsampled snapshot a view
      gets when it opens, and one refresh appending 10 new points per run
* load: one metric of a 1,000,000-point run (target < 200 ms), stored
    - as an import writes it (50k-point chunks), and
    - as a live worker writes it (one chunk per half-second flush, here 100 points each)
    - anchor: ``np.load`` of the same four columns from an uncompressed .npz file
* idle: one poll of a live comparison of 10 runs when nothing is new, as a share of one
  core at the 2 Hz refresh (the kernel's cost of watching).

Timings are medians of ``--repeat`` rounds; the machine is shared, so read the ratios.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _curves(runs: int, points: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    x = np.arange(points, dtype=np.float64)
    return [
        (x, np.exp(-x / points * (1 + r)) + 0.05 * rng.normal(size=points)) for r in range(runs)
    ]


def bench_draw(runs: int, points: int, repeat: int) -> list[tuple[str, float, str]]:
    from matplotlib.figure import Figure

    from jupyter_ext.widgets.chart import LiveChart

    curves = _curves(runs, points)

    def raw_matplotlib() -> None:
        fig = Figure(figsize=(8, 3.1))
        ax = fig.add_subplot()
        for x, y in curves:
            ax.plot(x, y, lw=1.4)
        fig.savefig(io.BytesIO(), format="png", dpi=120)

    chart = LiveChart()
    for r, (x, y) in enumerate(curves):
        chart.set_series(f"run{r}", panel="val_loss", label=f"run {r}")
        chart.append({f"run{r}": (x, y)})

    def ours_static() -> None:
        chart.figure().savefig(io.BytesIO(), format="png", dpi=120)

    def ours_snapshot() -> None:
        chart.send_snapshot()

    step = [points]

    def ours_append() -> None:
        new_x = np.arange(step[0], step[0] + 10, dtype=np.float64)
        chart.append({f"run{r}": (new_x, np.full(10, 0.1)) for r in range(runs)})
        step[0] += 10

    anchor = _median_time(raw_matplotlib, repeat)
    static = _median_time(ours_static, repeat)
    snapshot = _median_time(ours_snapshot, repeat)
    append = _median_time(ours_append, max(repeat, 20))
    n = f"{runs} x {points:,}"
    return [
        (f"draw {n}: raw matplotlib, every point (anchor)", anchor, "1.00"),
        (f"draw {n}: LiveChart.figure() to PNG", static, f"{static / anchor:.2f}"),
        (f"draw {n}: snapshot for a browser view", snapshot, f"{snapshot / anchor:.3f}"),
        (f"draw {n}: live refresh, 10 new points/run", append, f"{append / anchor:.4f}"),
    ]


def bench_load(repeat: int) -> list[tuple[str, float, str]]:
    from jupyter_ext.store import Series, Store

    n = 1_000_000
    rng = np.random.default_rng(1)
    series = Series(
        np.arange(n, dtype=np.int64),
        np.arange(n, dtype=np.int64) // 10_000,
        1.7e9 + np.arange(n) * 0.01,
        rng.normal(size=n),
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "store.sqlite")
        imported = store.create_run(name="imported", status="succeeded")["id"]
        store.add_series(imported, "val_loss", series)
        store.add_series(imported, "train_loss", series)  # a second metric to skip over
        live = store.create_run(name="live", status="succeeded")["id"]
        for i in range(0, n, 100):  # what a worker flushing every 0.5 s at 200 steps/s writes
            part = Series(
                *(getattr(series, f)[i : i + 100] for f in ("step", "epoch", "time", "value"))
            )
            store.add_series(live, "val_loss", part)
            store.add_series(live, "train_loss", part)
        npz = Path(tmp) / "anchor.npz"
        np.savez(npz, step=series.step, epoch=series.epoch, time=series.time, value=series.value)

        def anchor() -> None:
            with np.load(npz) as f:
                for k in ("step", "epoch", "time", "value"):
                    f[k]

        def load(run_id: str):
            def go() -> None:
                got, _ = store.read_metrics(run_id, keys=["val_loss"])
                assert len(got["val_loss"]) == n

            return go

        base = _median_time(anchor, repeat)
        t_imp = _median_time(load(imported), repeat)
        t_live = _median_time(load(live), repeat)
        store.close()
    return [
        ("load 1M points: np.load of the same columns (anchor)", base, "1.00"),
        ("load 1M points: store, imported (50k-point chunks)", t_imp, f"{t_imp / base:.2f}"),
        ("load 1M points: store, live-logged (100-point chunks)", t_live, f"{t_live / base:.2f}"),
    ]


def bench_idle(repeat: int) -> list[tuple[str, float, str]]:
    import time as _t

    from jupyter_ext.config import ToolkitConfig
    from jupyter_ext.store import open_store
    from jupyter_ext.widgets.compare import CompareView

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["JUPYTER_EXT_HOME"] = tmp
        ToolkitConfig.clear_instance()
        store = open_store()
        for r in range(10):
            run_id = store.create_run(
                name=f"r{r}", experiment="idle", status="running", heartbeat=_t.time()
            )["id"]
            store.add_metrics(
                run_id, [("loss", s, 0, _t.time(), 1.0 / (s + 1)) for s in range(200)]
            )
        view = CompareView("idle", refresh_s=3600)  # polled by hand below, not by the timer
        t = _median_time(view.refresh, max(repeat, 20))
        view.close()
        store.close()
    share = t / 0.5
    return [
        (
            "idle poll of a live comparison, 10 runs, nothing new",
            t,
            f"{share:.2%} of a core at 2 Hz",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = bench_draw(args.runs, args.points, args.repeat)
    rows += bench_load(args.repeat)
    rows += bench_idle(args.repeat)
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement'.ljust(width)}  {'median':>10}  ratio to anchor")
    for name, seconds, ratio in rows:
        print(f"{name.ljust(width)}  {seconds * 1000:8.1f} ms  {ratio}")
    print("targets: draw 10 x 200k < 500 ms (LiveChart.figure); load 1M < 200 ms")


if __name__ == "__main__":
    main()
