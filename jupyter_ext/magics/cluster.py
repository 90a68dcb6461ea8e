"""%cluster: which Ray cluster this kernel's later runs go to."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from ._args import parse


@magics_class
class ClusterMagics(Magics):
    @magic_arguments()
    @argument(
        "address",
        nargs="?",
        help="http://HOST:8265 (as `ray job submit --address` takes it), ray://HOST:10001, "
        "auto, or local (runs on this machine again); omit to show where runs go",
    )
    @argument("--client", help="the Ray Client address when not ray://HOST:10001")
    @argument(
        "--pip",
        nargs="+",
        default=None,
        help="packages every run's job installs on the cluster (Ray's runtime_env pip)",
    )
    @argument(
        "--runtime-env",
        default=None,
        help="Ray's runtime environment for every run's job, as JSON: '{\"env_vars\": {...}}'",
    )
    @line_magic
    def cluster(self, line: str = "") -> None:
        """Send this kernel's later runs to a Ray cluster, or show where they go.

        %cluster http://127.0.0.1:8265 selects that cluster (it must answer) and shows
        its nodes with CPUs, GPUs and memory, free and total; %cluster local goes back to
        this machine; %cluster alone shows where runs go now.
        """
        from ..cluster.address import ClusterUnreachable
        from ..cluster.selection import current_cluster_info, use_cluster

        args = parse(self.cluster, line)
        try:
            if args.address is None:
                if args.client is not None:
                    raise UsageError(
                        "--client goes with an address: %cluster ADDRESS --client ray://HOST:PORT"
                    )
                info = current_cluster_info()
                if info is None:
                    print(
                        "Runs of this kernel run on this machine. "
                        "%cluster http://HOST:8265 sends them to a Ray cluster."
                    )
                    return
            elif args.address.strip().lower() == "local":
                if args.client is not None:
                    raise UsageError("--client goes with a cluster address, not with local")
                use_cluster(None)
                print("Runs of this kernel run on this machine again.")
                return
            else:
                env = _runtime_env(args.runtime_env, args.pip)
                info = use_cluster(args.address, client=args.client, runtime_env=env)
        except (ValueError, ClusterUnreachable) as exc:
            raise UsageError(str(exc)) from None
        display(info)


def _runtime_env(text: str | None, pip: list[str] | None) -> dict | None:
    """``--runtime-env`` (JSON) and ``--pip`` as one runtime environment, or None."""
    import json

    env: dict = {}
    if text:
        try:
            env = json.loads(text)
        except ValueError as exc:
            raise UsageError(
                f'--runtime-env must be JSON, e.g. \'{{"env_vars": {{"A": "1"}}}}\' ({exc})'
            ) from None
        if not isinstance(env, dict):
            raise UsageError("--runtime-env must be a JSON object, as Ray takes it")
    if pip:
        env["pip"] = [*env.get("pip", []), *pip]
    return env or None
