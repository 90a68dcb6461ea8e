"""The worker process: ``python -m jupyter_ext.training.worker --run-id ID --home WORKSPACE``.

A real script, so Lightning's multi-process strategies (DDP) launch their other ranks as
they would from any script: by re-running this command. Only rank zero writes status,
progress and metrics. ``--spare`` starts a warm spare instead: torch and Lightning are
imported (CUDA untouched), then it waits on stdin for one job from its kernel, and exits
when the kernel goes away (stdin closes) without ever having been used.

The worker knows the store and its run directory, nothing about the kernel, so another
launcher can start it anywhere: a cluster job (:mod:`jupyter_ext.cluster.entry`) runs it
with a channel in the store's place.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tracebacks import register_cells, restore_code_origins, shape_exception

if TYPE_CHECKING:
    from ..store import Store

# Module level stays stdlib-only: a spare must be watching its kernel before anything
# slow (numpy, torch, Lightning) is imported.

PAYLOAD = "payload.pkl"
SPARE_READY = "jupyter_ext spare ready"
FLUSH_S = 0.4
META = "meta.json"
MAX_NOTICES = 20


RAY_TRAIN_RANK = "JUPYTER_EXT_RAY_TRAIN_RANK"  # set in each Ray Train worker of a cluster run


def is_rank_zero() -> bool:
    ray_rank = os.environ.get(RAY_TRAIN_RANK)
    if ray_rank is not None:
        return ray_rank == "0"  # Ray Train places ranks itself: its world rank decides
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


class Heartbeat(threading.Thread):
    """Every ``interval`` s: flush metrics, write heartbeat/progress/load, read stop requests."""

    def __init__(self, store: Store, run_id: str, interval: float, stop_event: threading.Event):
        super().__init__(name="jupyter-ext-heartbeat", daemon=True)
        self.store, self.run_id, self.interval = store, run_id, interval
        self.stop_event = stop_event
        self.progress: Any = None  # ProgressCallback, once training is set up
        self.logger: Any = None  # StoreLogger
        self.notices: list[dict[str, Any]] = []  # Lightning's warnings, said shortly
        self._notices_written = 0
        self._notices_lock = threading.Lock()
        self._done = threading.Event()
        import psutil

        self._proc = psutil.Process()
        self._proc.cpu_percent(None)
        self._sampled = 0.0

    def _load(self) -> dict[str, float]:
        import psutil

        procs = [self._proc]
        try:
            procs += self._proc.children(recursive=True)  # DDP ranks, dataloader workers
        except psutil.Error:
            pass
        cpu = rss = 0.0
        for p in procs:
            try:
                cpu += p.cpu_percent(None) if p is self._proc else 0.0
                rss += p.memory_info().rss
            except psutil.Error:
                continue
        out = {"cpu_pct": cpu, "rss_mb": rss / 2**20}
        # torch may still be importing on the main thread (half-initialised in sys.modules):
        # read CUDA memory only once torch.cuda is there.
        cuda = getattr(sys.modules.get("torch"), "cuda", None)
        if cuda is not None and cuda.is_initialized():
            out["gpu_mem_mb"] = cuda.memory_allocated() / 2**20
        return out

    def add_notice(self, notice: dict[str, Any]) -> None:
        """Keep a notice for the store (the same text twice is counted, not repeated)."""
        with self._notices_lock:
            for old in self.notices:
                if old["text"] == notice["text"]:
                    old["count"] = old.get("count", 1) + 1
                    self._notices_written = -1
                    return
            if len(self.notices) < MAX_NOTICES:
                self.notices.append({**notice, "time": time.time()})
                self._notices_written = -1  # changed: the next beat writes them

    def progress_fields(self, final: bool = False) -> dict[str, Any]:
        """What the store shows of the run's progress and pace (ETA 0 once it ended)."""
        p = self.progress
        if p is None:
            return {}
        return {
            "epoch": p.epoch,
            "step": p.step,
            "total_steps": p.total_steps,
            "total_epochs": p.total_epochs,
            "eta_s": 0.0 if final else p.eta_s(),
            "steps_per_s": p.pace.steps_per_s,
            "samples_per_s": p.pace.samples_per_s,
        }

    def notice_fields(self) -> dict[str, Any]:
        with self._notices_lock:
            if self._notices_written == len(self.notices):
                return {}
            self._notices_written = len(self.notices)
            return {"notices": [dict(n) for n in self.notices]}

    def beat(self) -> None:
        if self.logger is not None:
            self.logger.flush()
        fields: dict[str, Any] = {"heartbeat": time.time()}
        now = time.monotonic()
        if now - self._sampled >= self.interval:  # /proc scans: once per heartbeat, not per flush
            self._sampled = now
            fields.update(self._load())
        fields.update(self.progress_fields())
        fields.update(self.notice_fields())
        # A reader may have marked us lost while the machine stalled: we are alive.
        self.store.update_run(
            self.run_id, only_if_status=("running", "lost"), status="running", **fields
        )
        row = self.store.get_run(self.run_id)
        if row and row.stop_requested:
            self.stop_event.set()

    def run(self) -> None:
        # Metrics must reach the screen within a second: flush at least every 0.4 s.
        while not self._done.wait(min(self.interval, FLUSH_S)):
            try:
                self.beat()
            except Exception:  # a busy store must not kill the run; retry next beat
                traceback.print_exc()

    def finish(self) -> None:
        self._done.set()
        self.join(timeout=10)


def _build_trainer(
    payload: dict[str, Any], store: Store, run_id: str, run_dir: Path, hb: Heartbeat
):
    from lightning.pytorch import Callback, Trainer

    from .callbacks import AutoCheckpoint, LogInterval, ProgressCallback
    from .store_logger import StoreLogger

    kwargs = dict(payload["trainer_kwargs"])
    user_loggers = kwargs.pop("logger", None)
    if user_loggers in (None, True, False):
        user_loggers = []
    elif not isinstance(user_loggers, (list, tuple)):
        user_loggers = [user_loggers]
    user_callbacks = kwargs.pop("callbacks", None) or []
    if isinstance(user_callbacks, Callback):
        user_callbacks = [user_callbacks]
    kwargs.setdefault("enable_progress_bar", False)  # the monitor shows progress

    store_logger = StoreLogger(store, run_id)
    progress = ProgressCallback(hb.stop_event)
    ours: list[Callback] = [progress]
    if kwargs.get("log_every_n_steps") is None:

        def chosen(n: int) -> None:
            if is_rank_zero():
                store.update_run(run_id, log_every_n_steps=n, log_every_chosen=1)

        ours.append(LogInterval(on_chosen=chosen))
    checkpoint = None
    if kwargs.get("enable_checkpointing", True):
        checkpoint = AutoCheckpoint(dirpath=str(run_dir / "checkpoints"))
        ours.append(checkpoint)
    under_ray = os.environ.get(RAY_TRAIN_RANK) is not None
    if under_ray:
        # Ray Train started one process per rank and set up their process group: Lightning
        # joins it through Ray's strategy and environment instead of launching its own
        from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

        kwargs["strategy"] = RayDDPStrategy()
        plugins = kwargs.pop("plugins", None) or []
        kwargs["plugins"] = [*(plugins if isinstance(plugins, list) else [plugins])]
        kwargs["plugins"].append(RayLightningEnvironment())
        kwargs["devices"] = "auto"
        kwargs.pop("num_nodes", None)
    trainer = Trainer(
        default_root_dir=str(run_dir),
        logger=[store_logger, *user_loggers],
        callbacks=[*user_callbacks, *ours],
        **kwargs,
    )
    if under_ray:
        from ray.train.lightning import prepare_trainer

        trainer = prepare_trainer(trainer)
    hb.progress, hb.logger = progress, store_logger
    return trainer, progress, checkpoint, store_logger


def capture_warnings(hb: Heartbeat) -> Any:
    """Turn the warnings this process shows into notices for the monitor; each is still
    shown (in the log) as before. Returns the previous hook, to put back."""
    from .frames import notice_for

    previous = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        previous(message, category, filename, lineno, file, line)
        try:
            notice = notice_for(str(message), category, filename)
        except Exception:  # a notice is a nicety: never a reason for a run to fail
            return
        if notice is not None:
            hb.add_notice(notice)

    warnings.showwarning = show
    return previous


def _resolved(trainer: Any, requested_strategy: Any) -> dict[str, Any]:
    """What Lightning made of "auto": the accelerator, device count, strategy, precision."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    kind = type(trainer.accelerator).__name__
    for name in AcceleratorRegistry.available_accelerators():
        if AcceleratorRegistry[name]["accelerator"] is type(trainer.accelerator):
            kind = name
            break
    strategy = requested_strategy
    if not isinstance(strategy, str) or strategy == "auto":
        cls = type(trainer.strategy)
        names = [
            n for n, v in StrategyRegistry.items() if v["strategy"] is cls and not v["init_params"]
        ]
        strategy = names[0] if names else cls.__name__
    # under Ray Train each rank sees one device: the run has as many as it has ranks
    devices = trainer.world_size if os.environ.get(RAY_TRAIN_RANK) else trainer.num_devices
    return {
        "accelerator": kind,
        "devices": devices,
        "strategy": strategy,
        "precision": str(trainer.precision),
    }


def run(run_id: str, home: str, heartbeat_s: float = 1.0, store: Any = None) -> int:
    """Execute one run to its end; returns the process exit code.

    ``store``: where the run is recorded, by default the workspace's store in ``home``; a
    cluster run passes its channel instead (:class:`jupyter_ext.cluster.channel.ChannelStore`,
    the same methods).
    """
    from ..procs import process_started
    from ..store import ACTIVE, Store

    if store is None:
        store = Store(Path(home) / "store.sqlite")
    row = store.get_run(run_id)
    if row is None:
        print(f"jupyter_ext worker: no run {run_id} in {home}", file=sys.stderr)
        return 2
    name_process(row.name, run_id)
    run_dir = Path(row.run_dir or "")
    rank0 = is_rank_zero()
    stop_event = threading.Event()
    hb = Heartbeat(store, run_id, heartbeat_s, stop_event)
    if rank0:
        if row.stop_requested:
            store.update_run(run_id, only_if_status=ACTIVE, status="stopped", ended=time.time())
            return 0
        store.update_run(
            run_id,
            only_if_status=ACTIVE,
            status="running",
            started=time.time(),
            heartbeat=time.time(),
            pid=os.getpid(),
            pid_started=process_started(os.getpid()),
            host=socket.gethostname(),
        )
        hb.start()  # before the slow imports, so the run is seen alive while they run

    status, error, error_info, checkpoint, logger = "failed", None, None, None, None
    cells: dict[str, str] = {}
    if rank0:
        capture_warnings(hb)
    try:
        meta = json.loads((run_dir / META).read_text())
        for entry in meta.get("sys_path", []):
            if entry not in sys.path:
                sys.path.append(entry)  # modules the notebook imported by path
        # before unpickling: code from notebook cells then has its source for tracebacks
        cells = register_cells(meta.get("cells"))
        from . import payload as payload_mod

        payload = payload_mod.load(run_dir / PAYLOAD)
        restore_code_origins(payload.values(), meta.get("code"))
        trainer, progress, checkpoint, logger = _build_trainer(payload, store, run_id, run_dir, hb)
        if rank0:
            store.update_run(
                run_id, **_resolved(trainer, payload["trainer_kwargs"].get("strategy"))
            )
        trainer.fit(
            payload["model"],
            train_dataloaders=payload.get("train_dataloaders"),
            val_dataloaders=payload.get("val_dataloaders"),
            datamodule=payload.get("datamodule"),
            ckpt_path=payload.get("ckpt_path"),
        )
        if progress.stopped or trainer.interrupted:
            status = "stopped"
            # Every rank saves (a collective under DDP), so the stop keeps its state.
            trainer.save_checkpoint(str(run_dir / "checkpoints" / "last.ckpt"))
        else:
            status = "succeeded"
    except BaseException as exc:
        error = traceback.format_exc()
        print(error, file=sys.stderr)
        try:
            error_info = shape_exception(exc, cells).to_json()
        except Exception:  # the text is kept regardless; the monitor parses it instead
            traceback.print_exc()
    finally:
        if rank0:
            hb.finish()
            fields: dict[str, Any] = {"status": status, "ended": time.time(), "error": error}
            fields["error_info"] = error_info
            fields.update(hb.progress_fields(final=True))
            if hb.notices:  # all of them: a beat that failed may have missed some
                fields["notices"] = [dict(n) for n in hb.notices]
            if checkpoint is not None:
                last = run_dir / "checkpoints" / "last.ckpt"
                fields["last_checkpoint"] = str(last) if last.exists() else None
                fields["best_checkpoint"] = checkpoint.best_model_path or fields["last_checkpoint"]
            if logger is not None:
                logger.flush()
            store.update_run(run_id, only_if_status=(*ACTIVE, "lost"), **fields)
    sys.stdout.flush()
    sys.stderr.flush()
    return 0 if status != "failed" else 1


def set_title(title: str) -> None:
    """The process title ``ps``, ``top`` and ``nvidia-smi`` show (``sys.argv`` is kept,
    for Lightning to re-run this script for DDP ranks)."""
    try:
        from setproctitle import setproctitle
    except ImportError:  # a nicety: never a reason for a run to fail
        return
    setproctitle(title)


def name_process(name: str, run_id: str) -> None:
    """Show the run's name and id as the title: a run taken by a warm spare would
    otherwise keep the spare's command line. DDP ranks get their rank appended."""
    rank = os.environ.get("LOCAL_RANK", "0")
    suffix = f" rank {rank}" if rank != "0" else ""
    set_title(f"jupyter_ext worker: {name} ({run_id}){suffix}")


def watch_kernel() -> queue.Queue[bytes]:
    """Read this spare's one job from stdin on a thread; exit the process when stdin closes.

    Started before the heavy imports, so a spare whose kernel exits (stdin's only writer)
    leaves at once, even in the middle of importing torch: ``os._exit`` ends the process
    from any thread. The blocking read costs no CPU, and it works wherever pipes do (the
    parent-death signal is Linux-only and fires when the *thread* that forked exits).
    """
    jobs: queue.Queue[bytes] = queue.Queue(maxsize=1)

    def read() -> None:
        line = sys.stdin.buffer.readline()
        if not line.strip():
            os._exit(0)  # the kernel went away before it needed us
        jobs.put(line)

    threading.Thread(target=read, name="jupyter-ext-kernel-watch", daemon=True).start()
    return jobs


def spare(heartbeat_s: float) -> int:
    """Watch the kernel, import the heavy libraries, then run the one job it sends."""
    jobs = watch_kernel()
    import lightning.pytorch  # noqa: F401  (the seconds a cold worker spends)
    import torch  # noqa: F401

    # Titled now, before the job replaces the environment: setproctitle claims the
    # argv/environ area on first use, and after os.environ is rebuilt it cannot.
    set_title(f"jupyter_ext warm spare (kernel pid {os.getppid()})")
    print(f"{SPARE_READY} {os.getpid()}", flush=True)
    job = json.loads(jobs.get())
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    # DDP re-runs `python -m jupyter_ext.training.worker <argv>` for the other ranks: make that
    # the command line of this run, as if it had started cold.
    sys.argv = [sys.argv[0], "--run-id", job["run_id"], "--home", job["home"]]
    sys.argv += ["--heartbeat", str(heartbeat_s)]
    return run(job["run_id"], job["home"], heartbeat_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_ext.training.worker", description=__doc__
    )
    parser.add_argument("--run-id")
    parser.add_argument("--home", required=False)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--spare", action="store_true")
    args = parser.parse_args(argv)
    if args.spare:
        return spare(args.heartbeat)
    if not (args.run_id and args.home):
        parser.error("--run-id and --home are required (or --spare)")
    return run(args.run_id, args.home, args.heartbeat)


if __name__ == "__main__":
    sys.exit(main())
