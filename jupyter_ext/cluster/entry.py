"""A cluster run's Ray job: ``python -m jupyter_ext.cluster.entry --run-id ID``.

Ray Jobs starts this in the job's working directory, which is the run directory the kernel
wrote (``payload.pkl``, ``meta.json``, ``record.json``) and Ray uploaded to the cluster's
package store: the payload travels through Ray, never through a shared path. It creates the
run's channel (:mod:`.channel`), then runs the ordinary worker with the channel in the
store's place, and finally ships its checkpoints back through the channel.

SIGTERM (``ray job stop``, the launcher's last resort) asks the run to stop gracefully, as
the store's stop flag does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_ext.cluster.entry")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    args = parser.parse_args(argv)

    import ray

    from ..store import RunRecord
    from ..training import worker
    from .channel import NAMESPACE, ChannelStore, RunChannel, channel_name

    run_dir = Path.cwd()
    doc = json.loads((run_dir / "record.json").read_text())
    record = RunRecord(**doc)
    ray.init(namespace=NAMESPACE, log_to_driver=False)
    # detached: it outlives this job, so the workspace can drain what is left after it
    # ended; the sync removes it once everything is in the store
    actor = (
        ray.remote(RunChannel)
        .options(
            name=channel_name(args.run_id),
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            num_cpus=0,
        )
        .remote()
    )
    store = ChannelStore(actor, record, run_dir)

    def stop(signum: int, frame: object) -> None:
        store._stop = True  # the heartbeat hands it to Lightning at the next step

    signal.signal(signal.SIGTERM, stop)
    os.environ.setdefault("JUPYTER_EXT_CLUSTER_RUN", args.run_id)
    try:
        code = worker.run(args.run_id, "", args.heartbeat, store=store)
    finally:
        try:
            store.flush()
            ray.get(actor.finish.remote())
        except Exception as exc:  # the job's log keeps it; the sync sees the job's end
            print(f"jupyter_ext: could not finish the channel: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
