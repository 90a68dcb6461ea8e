"""A cluster that stops answering mid-run: the run shows it, then recovers.

The Ray Client server that this process talks to is frozen (SIGSTOP) while the run trains
on: the sync's calls to the cluster hang, as they would behind a network partition. The
run must show as ``lost`` with why (not a silent freeze), and when the server answers
again (SIGCONT) it must be ``running`` again with the metrics logged meanwhile, then stop
gracefully with its checkpoint.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest
from helpers import wait_for
from tiny_models import Tiny, loaders

import jupyter_ext
from jupyter_ext.cluster import sync
from jupyter_ext.cluster.selection import use_cluster

pytestmark = pytest.mark.cluster


def _client_servers(group: int) -> list[psutil.Process]:
    """The head's Ray Client server processes (the proxy and the one serving us)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            ours = p.pid == group or os.getpgid(p.pid) == group
            if ours and "ray.util.client.server" in " ".join(p.info["cmdline"] or ()):
                found.append(p)
        except (psutil.Error, ProcessLookupError):
            continue
    return found


def test_an_unreachable_cluster_shows_then_recovers(workspace, ray_head, monkeypatch):
    cfg = jupyter_ext.get_config()
    cfg.lost_after_s = 2.0
    monkeypatch.setattr(sync, "CALL_TIMEOUT_S", 3.0)  # the sync's deadline for one look
    use_cluster(ray_head.dashboard, client=ray_head.client)
    try:
        tr, va = loaders()
        run = jupyter_ext.train(
            Tiny(step_delay=0.1), train_dataloaders=tr, val_dataloaders=va, max_epochs=200,
            name="partitioned",
        )  # fmt: skip
        wait_for(lambda: len(run.metrics) >= 3, 240, what="the run's first metrics")
        servers = _client_servers(ray_head.pid)
        assert servers, "no Ray Client server in the head's process group"
        for p in servers:
            p.send_signal(signal.SIGSTOP)
        try:
            row = wait_for(
                lambda: (r := run.row).status == "lost" and r, 90, what="the run shown lost"
            )
            assert row.error.startswith("The Ray cluster is unreachable:"), row.error
            assert ray_head.dashboard in row.error
            seen = len(run.metrics)
        finally:
            for p in servers:
                p.send_signal(signal.SIGCONT)
        # back: running again, with what it logged while nobody could see it
        wait_for(
            lambda: (r := run.row).status == "running" and not r.error, 180,
            what="the run running again",
        )  # fmt: skip
        wait_for(lambda: len(run.metrics) > seen + 3, 120, what="metrics after the partition")
        assert run.stop(timeout=120) == "stopped"
        assert Path(run.row.last_checkpoint).is_file()
    finally:
        use_cluster("local")
