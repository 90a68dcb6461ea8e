"""A cluster run's channel: the one way between its worker on the cluster and the workspace.

The cluster shares no filesystem with the workspace. The job's entrypoint
(:mod:`.entry`) creates one detached, named Ray actor per run, :class:`RunChannel`; the
worker writes to it what it would write to the store (run updates, metric rows, and at the
end its checkpoint files) through :class:`ChannelStore`, and reads stop requests from it.
Whoever keeps the workspace current (:mod:`.sync`, in a kernel or the Jupyter server)
drains it into the store and forwards stop requests.

Draining is acknowledged: the channel keeps every operation until a sync has applied it and
says so with its next call, so a sync that dies mid-way loses nothing; and one sync at a
time holds a lease on the channel, so two kernels never apply the same metrics twice.

This module imports only the standard library: the worker side runs inside the job, the
actor inside Ray; Ray itself is imported where an actor is made.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store import RunRecord

NAMESPACE = "jupyter_ext"
LEASE_S = 10.0  # a sync that has not drained for this long gives its lease up
CHECKPOINT_FIELDS = ("best_checkpoint", "last_checkpoint")


def channel_name(run_id: str) -> str:
    """The Ray actor name of a run's channel.

    Example::

        >>> channel_name("a1b2c3")
        'jupyter_ext-run-a1b2c3'
    """
    return f"jupyter_ext-run-{run_id}"


class RunChannel:
    """Operations from a run's worker, waiting for the workspace (a Ray actor's class).

    Example::

        >>> ch = RunChannel()
        >>> ch.put([("metrics", [("loss", 1, 0, 0.0, 0.5)])])
        False
        >>> ch.take("sync-1", 0)
        (0, [('metrics', [('loss', 1, 0, 0.0, 0.5)])])
    """

    def __init__(self) -> None:
        self._ops: list[Any] = []
        self._first = 0  # the index of _ops[0] in the whole log
        self._stop = False
        self._files: dict[str, bytes] = {}
        self._holder: str | None = None
        self._lease_until = 0.0
        self._last_put = time.time()
        self._finished = False

    # the worker's side
    def put(self, ops: list[Any]) -> bool:
        """Append operations; returns whether a stop was requested."""
        self._ops.extend(ops)
        self._last_put = time.time()
        return self._stop

    def put_file(self, name: str, data: bytes) -> None:
        """Keep a file (a checkpoint) for the workspace, under a relative name."""
        self._files[name] = data

    def finish(self) -> None:
        """The worker is done: every operation and file is in."""
        self._finished = True

    def stop_requested(self) -> bool:
        return self._stop

    # the workspace's side
    def take(self, holder: str, ack: int) -> tuple[int, list[Any]] | None:
        """Drop what ``holder`` applied (before index ``ack``) and return ``(index, ops)``
        of the rest; None while another sync holds the lease."""
        now = time.time()
        if self._holder not in (None, holder) and now < self._lease_until:
            return None
        self._holder, self._lease_until = holder, now + LEASE_S
        drop = max(0, min(ack - self._first, len(self._ops)))
        if drop:
            del self._ops[:drop]
            self._first += drop
        return self._first, list(self._ops)

    def request_stop(self) -> None:
        self._stop = True

    def state(self) -> dict[str, Any]:
        return {
            "finished": self._finished,
            "pending": len(self._ops),
            "files": sorted(self._files),
            "last_put": self._last_put,
        }

    def file(self, name: str) -> bytes:
        return self._files[name]


class ChannelStore:
    """What the worker calls the store, when the store is a channel away.

    It answers ``get_run`` from the record it was given (with the job's own run directory,
    and the channel's stop flag), and sends ``update_run``/``add_metrics`` as operations,
    buffered and flushed by the worker's heartbeat like the store's writes. Checkpoint paths
    in an update are sent as the files themselves, named relative to the run directory.

    Example::

        >>> store = ChannelStore(channel_actor, record, Path.cwd())  # doctest: +SKIP
        >>> worker.run(record.id, home="", store=store)  # doctest: +SKIP
    """

    def __init__(self, actor: Any, record: RunRecord, run_dir: Path) -> None:
        self.actor = actor
        self.run_dir = run_dir
        self._record = replace(record, run_dir=str(run_dir))
        self._pending: list[Any] = []
        self._lock = threading.Lock()
        self._stop = False

    def get_run(self, run_id: str) -> RunRecord | None:
        self.flush()
        return replace(self._record, stop_requested=int(self._stop))

    def update_run(self, run_id: str, *, only_if_status: Any = (), **values: Any) -> bool:
        for key in CHECKPOINT_FIELDS:
            if values.get(key):
                values[key] = self._send_file(Path(values[key]))
        self._record = replace(
            self._record, **{k: v for k, v in values.items() if hasattr(self._record, k)}
        )
        with self._lock:
            self._pending.append(("update", values, list(only_if_status)))
        if "status" in values and values["status"] not in ("running", "queued"):
            self.flush()  # the end: nothing may wait for a heartbeat that will not come
        return True

    def add_metrics(self, run_id: str, rows: Any) -> int:
        rows = [tuple(r) for r in rows]
        with self._lock:
            self._pending.append(("metrics", rows))
        return len(rows)

    def flush(self) -> None:
        """Send what is buffered (one actor call) and read the stop flag back."""
        import ray

        with self._lock:
            ops, self._pending = self._pending, []
        try:
            self._stop = ray.get(self.actor.put.remote(ops)) or self._stop
        except Exception:
            with self._lock:  # keep them for the next flush rather than lose them
                self._pending[:0] = ops
            raise

    def _send_file(self, path: Path) -> str:
        """Ship a checkpoint to the channel; its name relative to the run directory."""
        import ray

        try:
            name = str(path.resolve().relative_to(self.run_dir.resolve()))
        except ValueError:
            name = f"checkpoints/{path.name}"
        if path.is_file():
            ray.get(self.actor.put_file.remote(name, path.read_bytes()))
        return name
