"""Keeping cluster runs current in the workspace store.

One thread per process (a kernel that launched or looks at a cluster run; the Jupyter
server extension) drains every active cluster run's channel (:mod:`.channel`) into the
store, as a local worker would have written it: run updates, metric rows, and at the end
its checkpoints, saved into the run's directory of the workspace so ``load_model()``,
``resume()`` and ``--from-run`` deploys work unchanged. Stop requests recorded in the store
(the monitor's Stop, ``%stop``, the sidebar) go to the channel. The Ray job's own status
settles what the worker could not say: a job that failed before the worker started, or
was stopped or lost with its node.

The thread connects to the cluster with ``ray.init(address=<the run's client address>)``
once, and reconnects when the cluster comes back after being unreachable; meanwhile the
run's heartbeat goes stale and the views show it lost, then running again.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..store import ACTIVE, Store

log = logging.getLogger("jupyter_ext.cluster")
POLL_S = 0.25
# a cluster that does not answer within these is unreachable for this tick (the views then
# say so), rather than a sync thread blocked forever
CALL_TIMEOUT_S = 10.0
FILE_TIMEOUT_S = 600.0
JOB_POLL_S = 2.0
UNREACHABLE = "The Ray cluster is unreachable:"
_JOB_ENDED = {"SUCCEEDED": "succeeded", "FAILED": "failed", "STOPPED": "stopped"}


class ClusterSync(threading.Thread):
    """Drains the channels of the workspace's active cluster runs (a daemon thread).

    Example::

        >>> ensure_sync(home)  # doctest: +SKIP
    """

    def __init__(self, home: Path) -> None:
        super().__init__(name="jupyter-ext-cluster-sync", daemon=True)
        self.home = home
        self.store = Store(home / "store.sqlite")
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self._connected: str | None = None
        self._job_checked: dict[str, float] = {}
        self._stop_sent: set[str] = set()
        self._silent_since: dict[str, float] = {}
        self._done = threading.Event()
        # Ray calls go through one caller thread, so a cluster that stops answering blocks
        # it rather than this thread (see tick())
        self._caller = concurrent.futures.ThreadPoolExecutor(1, "jupyter-ext-cluster-call")
        self._call: concurrent.futures.Future[None] | None = None
        self._call_started = 0.0
        self._downloading = False
        self.errors: dict[str, str] = {}  # run id -> the last error (for the views, tests)

    def run(self) -> None:
        while not self._done.wait(POLL_S):
            try:
                self.tick()
            except Exception as exc:  # a bad tick must not end the thread
                log.warning("cluster sync: %s", exc)
        if self._connected is not None and not self._in_call():
            self._shutdown_ray()  # a Ray Client would go on reconnecting

    def stop(self) -> None:
        self._done.set()

    def pending(self) -> list[Any]:
        """Cluster runs with something left to bring in (:func:`pending_runs`)."""
        return pending_runs(self.store)

    def tick(self) -> None:
        """One look at the cluster: every pending run drained and its job checked.

        The calls to Ray run in a caller thread under a deadline: a cluster that stops
        answering mid-call (a Ray Client reconnecting, a frozen head) blocks that thread,
        not this one, so the runs are shown unreachable, then lost, while it waits.
        """
        pending = self.pending()
        if self._in_call():
            self._overdue(pending)  # the last look has not come back yet
            return
        if not pending:
            if self._connected is not None:
                # nothing to bring in: let go of the cluster (a Ray Client connection keeps
                # reconnecting in the background, even to a cluster that is gone)
                self._shutdown_ray()
            return
        self._call = self._caller.submit(self._look, pending)
        self._call_started = time.monotonic()
        with contextlib.suppress(concurrent.futures.TimeoutError):
            self._call.result(timeout=CALL_TIMEOUT_S)
        if self._in_call():
            self._overdue(pending)

    def _in_call(self) -> bool:
        return self._call is not None and not self._call.done()

    def _overdue(self, pending: list[Any]) -> None:
        """The caller thread is still in a call: past its deadline, the cluster is not
        answering (a checkpoint download gets ``FILE_TIMEOUT_S``)."""
        waited = time.monotonic() - self._call_started
        limit = FILE_TIMEOUT_S if self._downloading else CALL_TIMEOUT_S
        if waited <= limit:
            return
        for row in pending:
            self.errors[row.id] = f"no answer in {waited:.0f} s"
            self._unreachable(row)

    def _look(self, pending: list[Any]) -> None:
        """In the caller thread: drain every pending run, then check its job."""
        for row in pending:
            try:
                self._drain(row)
            except Exception as exc:
                self.errors[row.id] = f"{type(exc).__name__}: {exc}"
                self._disconnect_if_down(exc)
                self._unreachable(row)
            else:
                self._reached(row)
            self._check_job(row)

    def _shutdown_ray(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.shutdown()
        self._connected = None

    def _unreachable(self, row: Any) -> None:
        """The cluster has not answered for ``lost_after_s``: show the run as lost, with
        why (the worker's next heartbeat through the channel makes it running again)."""
        from ..config import get_config

        since = self._silent_since.setdefault(row.id, time.time())
        if row.status in ACTIVE and time.time() - since > get_config().lost_after_s:
            when = time.strftime("%H:%M:%S", time.localtime(since))
            self.store.update_run(
                row.id, only_if_status=ACTIVE, status="lost",
                error=f"{UNREACHABLE} {row.cluster['dashboard']} since {when} "
                f"({self.errors.get(row.id, '')}); the run shows again when it answers.",
            )  # fmt: skip

    def _reached(self, row: Any) -> None:
        self._silent_since.pop(row.id, None)
        self.errors.pop(row.id, None)
        fresh = self.store.get_run(row.id)
        if fresh is not None and (fresh.error or "").startswith(UNREACHABLE):
            self.store.update_run(row.id, error=None)

    # -- the Ray connection -----------------------------------------------------------
    def _ray(self, address: str) -> Any:
        import ray

        if self._connected != address:
            if ray.is_initialized():
                ray.shutdown()
            from .channel import NAMESPACE

            ray.init(
                address=address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR"
            )
            self._connected = address
        return ray

    def _disconnect_if_down(self, exc: Exception) -> None:
        text = str(exc).lower()
        if any(w in text for w in ("unavailable", "connection", "failed to connect", "timed out")):
            self._shutdown_ray()

    # -- draining ---------------------------------------------------------------------
    def _drain(self, row: Any) -> None:
        fields = dict(row.cluster)
        ray = self._ray(fields["client"])
        try:
            actor = ray.get_actor(fields["channel"])
        except ValueError:
            return  # the job has not created it yet (or it is gone: the job status says)
        if row.stop_requested and row.id not in self._stop_sent:
            ray.get(actor.request_stop.remote(), timeout=CALL_TIMEOUT_S)
            self._stop_sent.add(row.id)
        got = ray.get(
            actor.take.remote(self.holder, int(fields.get("acked", 0))), timeout=CALL_TIMEOUT_S
        )
        if got is None:
            return  # another kernel (or the server) holds the lease and drains it
        start, ops = got
        run_dir = Path(row.run_dir or self.home / "runs" / row.id)
        for op in ops:
            self._apply(row.id, op, actor, ray, run_dir)
        fields["acked"] = start + len(ops)
        state = (
            ray.get(actor.state.remote(), timeout=CALL_TIMEOUT_S)
            if not ops or _ended(ops)
            else None
        )
        if state is not None and state["finished"]:
            ray.get(actor.take.remote(self.holder, fields["acked"]), timeout=CALL_TIMEOUT_S)
            fields["drained"] = True
            with contextlib.suppress(Exception):
                ray.kill(actor)
        self.store.update_run(row.id, cluster=fields)

    def _apply(self, run_id: str, op: Any, actor: Any, ray: Any, run_dir: Path) -> None:
        kind = op[0]
        if kind == "metrics":
            self.store.add_metrics(run_id, op[1])
            return
        values, only_if = dict(op[1]), tuple(op[2])
        for key in ("best_checkpoint", "last_checkpoint"):
            name = values.get(key)
            if name:
                target = (run_dir / name).resolve()
                if run_dir.resolve() not in target.parents:
                    values[key] = None  # never write outside the run's directory
                    continue
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    tmp = target.with_suffix(target.suffix + ".part")
                    self._downloading = True
                    try:
                        data = ray.get(actor.file.remote(name), timeout=FILE_TIMEOUT_S)
                    finally:
                        self._downloading = False
                    tmp.write_bytes(data)
                    tmp.replace(target)
                values[key] = str(target)
        if "run_dir" in values:
            values.pop("run_dir")  # the job's directory; the workspace keeps its own
        self.store.update_run(run_id, only_if_status=only_if, **values)

    # -- the job's own status ---------------------------------------------------------
    def _check_job(self, row: Any) -> None:
        now = time.monotonic()
        if now - self._job_checked.get(row.id, 0.0) < JOB_POLL_S:
            return
        self._job_checked[row.id] = now
        fields = dict(row.cluster)
        try:
            from ray.job_submission import JobSubmissionClient

            client = JobSubmissionClient(fields["dashboard"])
            status = str(client.get_job_status(fields["job_id"]))
        except Exception:
            return  # unreachable: the heartbeat goes stale and the views say so
        status = status.rsplit(".", 1)[-1]
        if status not in _JOB_ENDED:
            return
        # the job ended: give the channel one more drain, then settle what is left
        with contextlib.suppress(Exception):
            self._drain(row)
        fresh = self.store.get_run(row.id)
        if fresh is None or (fresh.cluster or {}).get("drained"):
            return
        if fresh.status not in (*ACTIVE, "lost"):
            # the worker said its last word; nothing more will come: remove the channel
            with contextlib.suppress(Exception):
                ray = self._ray(fields["client"])
                ray.kill(ray.get_actor(fields["channel"]))
            self.store.update_run(row.id, cluster={**dict(fresh.cluster or {}), "drained": True})
            return
        logs = ""
        with contextlib.suppress(Exception):
            logs = client.get_job_logs(fields["job_id"])[-4000:]
        ended = _JOB_ENDED[status]
        message = ""
        with contextlib.suppress(Exception):
            message = str(client.get_job_info(fields["job_id"]).message or "")
        if (
            ended == "failed"
            and "node" in message.lower()
            and ("died" in message.lower() or "dead" in message.lower())
        ):
            ended, why = "lost", f"the Ray job's node was lost ({message})"
        elif ended == "succeeded":
            ended, why = "lost", "the Ray job ended without the worker's final word"
        elif ended == "stopped":
            why = "the Ray job was stopped"
        else:
            why = "the Ray job failed"
        error = f"{why} ({fields['job_id']} on {fields['dashboard']}).\n{logs}".strip()
        self.store.update_run(
            row.id, only_if_status=(*ACTIVE, "lost"), status=ended, ended=time.time(),
            error=error, cluster={**dict(fresh.cluster or {}), "drained": True},
        )  # fmt: skip
        with contextlib.suppress(Exception):
            ray = self._ray(fields["client"])
            ray.kill(ray.get_actor(fields["channel"]))


def pending_runs(store: Store) -> list[Any]:
    """Cluster runs with something left to bring in: active ones, and ended ones whose
    channel is not yet emptied and removed (changed in the last day). One read of the
    store, no Ray: cheap enough for whoever decides whether a sync is needed.

    Example::

        >>> [r.name for r in pending_runs(open_store())]  # doctest: +SKIP
        ['far']
    """
    rows = store.list_runs(since=time.time() - 86400)
    return [r for r in rows if r.cluster and not r.cluster.get("drained")]


def _ended(ops: list[Any]) -> bool:
    return any(
        op[0] == "update" and op[1].get("status") not in (None, "running", "queued") for op in ops
    )


_sync: ClusterSync | None = None
_lock = threading.Lock()


def ensure_sync(home: Path) -> ClusterSync:
    """This process's sync thread for the workspace at ``home`` (started once).

    Example::

        >>> ensure_sync(get_config().home_path)  # doctest: +SKIP
    """
    global _sync
    with _lock:
        if _sync is None or not _sync.is_alive() or _sync.home != home:
            if _sync is not None:
                _sync.stop()
            _sync = ClusterSync(home)
            _sync.start()
        return _sync
