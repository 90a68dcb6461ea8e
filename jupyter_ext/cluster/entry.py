"""A cluster run's Ray job: ``python -m jupyter_ext.cluster.entry --run-id ID``.

Ray Jobs starts this in the job's working directory, which is the run directory the kernel
wrote (``payload.pkl``, ``meta.json``, ``record.json``) and Ray uploaded to the cluster's
package store: the payload travels through Ray, never through a shared path. It creates the
run's channel (:mod:`.channel`), then runs the ordinary worker with the channel in the
store's place, and finally ships its checkpoints back through the channel.

A run over several devices or nodes (``--workers N``) goes through Ray Train: a
``TorchTrainer`` starts one process per rank where Ray places them, each runs the same worker
with Lightning joined to Ray's process group (Ray's DDP strategy and environment), and only
world rank zero writes to the channel. The payload travels to each rank in the trainer's
config; ``--storage`` is Ray Train's storage path (a URI every node can reach, for clusters of
several nodes).

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
    parser.add_argument("--workers", type=int, default=1, help="ranks (Ray Train when > 1)")
    parser.add_argument("--use-gpu", action="store_true", help="one GPU per rank")
    parser.add_argument("--storage", default=None, help="Ray Train's storage path (a URI)")
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
        if args.workers > 1:
            ray.get(actor.request_stop.remote())  # rank zero reads it from the channel

    signal.signal(signal.SIGTERM, stop)
    try:
        if args.workers > 1:
            code = _ray_train(args, doc, run_dir, actor)
        else:
            code = worker.run(args.run_id, "", args.heartbeat, store=store)
    finally:
        try:
            store.flush()
            ray.get(actor.finish.remote())
        except Exception as exc:  # the job's log keeps it; the sync sees the job's end
            print(f"jupyter_ext: could not finish the channel: {exc}", file=sys.stderr)
    return code


def _ray_train(args: argparse.Namespace, doc: dict, run_dir: Path, actor: object) -> int:
    """Run the worker on ``args.workers`` ranks placed by Ray Train; the exit code."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ..training.worker import META, PAYLOAD

    config = {
        "run_id": args.run_id,
        "record": doc,
        "payload": (run_dir / PAYLOAD).read_bytes(),
        "meta": (run_dir / META).read_text(),
        "heartbeat": args.heartbeat,
        "actor": actor,
    }
    trainer = TorchTrainer(
        _rank,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=args.workers, use_gpu=args.use_gpu),
        run_config=RunConfig(name=f"jupyter_ext-{args.run_id}", storage_path=args.storage),
    )
    try:
        trainer.fit()
    except Exception as exc:  # rank zero recorded the failure with its traceback
        print(f"jupyter_ext: Ray Train ended with {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _rank(config: dict) -> None:
    """One rank of a Ray Train run: the ordinary worker, in a directory of its own."""
    import tempfile

    import ray.train

    from ..store import RunRecord
    from ..training import worker
    from .channel import ChannelStore

    rank = ray.train.get_context().get_world_rank()
    os.environ[worker.RAY_TRAIN_RANK] = str(rank)
    run_dir = Path(tempfile.mkdtemp(prefix=f"jupyter_ext-{config['run_id']}-rank{rank}-"))
    (run_dir / worker.PAYLOAD).write_bytes(config["payload"])
    (run_dir / worker.META).write_text(config["meta"])
    store = ChannelStore(config["actor"], RunRecord(**config["record"]), run_dir)
    code = worker.run(config["run_id"], "", config["heartbeat"], store=store)
    if code != 0:
        raise RuntimeError(f"rank {rank} of run {config['run_id']} failed (see the run's error)")


if __name__ == "__main__":
    sys.exit(main())
