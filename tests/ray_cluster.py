"""A real local Ray cluster for the tests: one head per test session (pytest plugin).

``ray_head`` starts ``ray start --head --block`` from the venv on 127.0.0.1 (free ports
for the GCS, the dashboard, the Ray Client and Ray's agents; its own short temp dir;
2 CPUs; a small object store), waits until the dashboard answers and the node is alive,
and at the end stops it by its process group and checks nothing of that group is left.
Registered in conftest.py with ``pytest_plugins``; tests that use it are marked
``cluster``. Starting a head takes 10-30 s on a small machine, hence one per session.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import pytest
from helpers import wait_for

from jupyter_ext import procs
from jupyter_ext.cluster.head import LocalHead, free_port, start_head, stop_head

OBJECT_STORE_BYTES = 80 * 1000 * 1000  # Ray's minimum is 75 MB
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RayHead(LocalHead):
    """A :class:`LocalHead` that also says how long it took to be ready (``start_s``)."""

    start_s: float = 0.0


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """The session's local Ray head: ``.dashboard`` (http URL, what ``%cluster`` takes),
    ``.client`` (ray:// URL), ``.gcs`` (host:port), ``.temp_dir``, ``.pid`` (its group);
    ``.start_s`` says how long it took to be ready."""
    # On a machine busy with other work, Ray's node registration can miss its fixed 30 s
    # ("the current node timed out during startup ... the GCS has become overloaded"): that
    # start is retried, twice at most; any other failure fails at once.
    for attempt in range(3):
        try:
            head, temp_dir, t0 = _start()
            break
        except RuntimeError as exc:
            if "timed out during startup" not in str(exc) or attempt == 2:
                raise
    try:
        yield RayHead(**asdict(head), start_s=time.monotonic() - t0)
    finally:
        _stop(head, temp_dir)


def _start() -> tuple[LocalHead, str, float]:
    """A head ready for tests: ``(head, its temp dir, when it was started)``."""
    # Short on purpose: Ray's Unix sockets live under it and their paths are capped at
    # 107 bytes (a pytest tmp_path is too long).
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    t0 = time.monotonic()
    head = start_head(
        temp_dir,
        dashboard_port=free_port(),
        client_port=free_port(),
        num_cpus=2,
        object_store_memory=OBJECT_STORE_BYTES,
        wait_s=None,
    )

    def ready() -> bool:
        if not head.running():
            raise RuntimeError(
                f"the Ray head exited while starting; its log:\n{procs.log_tail(head.log, 40)}"
            )
        return head.ready()

    try:
        wait_for(ready, timeout=START_TIMEOUT_S, interval=0.25, what="the Ray head to be ready")
    except BaseException:
        _stop(head, temp_dir)
        raise
    return head, temp_dir, t0


def _stop(head: LocalHead, temp_dir: str) -> None:
    stop_head(head.pid, head.started)
    left = procs.group_members(head.pid)
    assert not left, f"processes {left} of the Ray head's group outlived it"
    shutil.rmtree(temp_dir, ignore_errors=True)
