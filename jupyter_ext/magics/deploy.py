"""%%deploy, %deployments and %undeploy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, argument_group, magic_arguments

from ._args import parse
from ._cell import CellNamespace

# what deploy() raises for input it refuses (and DeployError, added on first use)
_REFUSALS: tuple[type[BaseException], ...] = (ValueError, TypeError, LookupError, OSError)

# How the model is served: one group, defined once, for every magic that serves a model.
_SERVING: dict[str, dict[str, Any]] = {
    "--engine": {"choices": ["fastapi", "litserve"], "default": "fastapi"},
    "--workers": {"type": int, "default": 1, "help": "litserve: workers per device"},
    "--max-batch-size": {
        "type": int,
        "default": 1,
        "help": "dynamic batching: stack up to N concurrent rows into one forward pass",
    },
    "--batch-timeout-ms": {
        "type": float,
        "default": 0.0,
        "help": "dynamic batching: how long a request may wait for others (ms)",
    },
    "--threads": {"type": int, "help": "intra-op threads of the model runtime"},
    "--device": {"default": "cpu", "help": "where the server runs the model: cpu, cuda:N"},
    "--host": {"default": "127.0.0.1", "help": "local: address to bind"},
    "--port": {"type": int, "help": "local: port to serve on (default: a free one)"},
    "--api-key": {"help": "require this key (X-API-Key header)"},
}
SERVING_OPTIONS = (
    argument_group("serving", "How the model is served (a bundle records the engine)."),
    *(argument(flag, **kwargs) for flag, kwargs in _SERVING.items()),
)
# the parsed arguments' names, passed to deploy() as they are
SERVING_DESTS = tuple(flag[2:].replace("-", "_") for flag in _SERVING)


def serving_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add :data:`SERVING_OPTIONS` to a magic, as one group. Put it last among the
    ``@argument`` lines (an argument group takes the arguments that follow it).

    Example::

        >>> @magic_arguments()  # doctest: +SKIP
        ... @argument("--name")
        ... @serving_options
        ... @line_cell_magic
        ... def deploy(self, line, cell=None): ...
    """
    for deco in reversed(SERVING_OPTIONS):  # decorators apply bottom-up
        func = deco(func)
    return func


def _ray_options(args: Any) -> dict[str, Any]:
    """deploy()'s Ray Serve arguments from the magic's (only those given: deploy refuses
    them for targets other than ray)."""
    low, high = args.min_replicas, args.max_replicas
    if (low is None) != (high is None):
        raise UsageError("autoscaling needs both --min-replicas and --max-replicas")
    out: dict[str, Any] = {}
    if low is not None:
        if args.replicas != 1:
            raise UsageError("give --replicas N or --min-replicas/--max-replicas, not both")
        out["autoscaling"] = {"min_replicas": low, "max_replicas": high}
    elif args.replicas != 1:
        out["replicas"] = args.replicas
    if args.cluster:
        out["cluster"] = args.cluster
    if args.num_cpus is not None:
        out["num_cpus"] = args.num_cpus
    return out


def _refusals() -> tuple[type[BaseException], ...]:
    from ..deployment.export import DeployError

    return (*_REFUSALS, DeployError)


@magics_class
class DeployMagics(Magics):
    @magic_arguments()
    @argument(
        "--target",
        default="local",
        help="local (a server here), bundle (a directory), kserve (a bundle and its KServe "
        "manifests) or ray (Ray Serve on the cluster)",
    )
    @argument("--name", help="deployment name (default: the model class, lower case)")
    @argument(
        "--model",
        help="deploy this existing variable (default: the `model` the cell assigns)",
    )
    @argument("--from-run", dest="from_run", help="deploy this run's best checkpoint")
    @argument(
        "--example",
        help="expression for an example batch, e.g. 'torch.randn(4, 13)' "
        "(default: model.example_input_array)",
    )
    @argument("--format", choices=["auto", "pt2", "onnx", "pickle"], default="auto")
    @argument("--out", help="bundle: directory to write (default: ./NAME_bundle)")
    @argument("--tolerance", type=float, default=1e-4, help="parity tolerance")
    @argument("--cluster", help="ray: the cluster's address (default: the one %%cluster selected)")
    @argument("--replicas", type=int, default=1, help="ray: number of replicas")
    @argument("--min-replicas", type=int, help="ray: Ray's autoscaling, at least this many")
    @argument("--max-replicas", type=int, help="ray: Ray's autoscaling, at most this many")
    @argument("--num-cpus", type=float, help="ray: CPUs each replica reserves (default 1)")
    @serving_options
    @line_cell_magic
    def deploy(self, line: str = "", cell: str | None = None) -> Any:
        """Run the cell, then deploy the `model` it assigns to a local server, a bundle,
        or Ray Serve on a Ray cluster (--target ray [--replicas N | --min-replicas A
        --max-replicas B]: one Serve application named after the deployment).

        The model is exported (pt2, onnx or pickle; auto picks the fastest that passes the
        parity check), served on 127.0.0.1 and health-checked; the example's answer over
        HTTP is compared with the in-notebook model's. A `model` left from an earlier cell
        is not taken silently: name it with --model model. Without a cell (%deploy), name
        the model with --model VAR, or use --from-run RUN. Example:

            %%deploy --name iris --example 'torch.randn(4, 4)'
            model = IrisNet().eval()
        """
        args = parse(self.deploy, line)
        ns = CellNamespace(self.shell, action="deployed")
        if not ns.run(cell):
            return None  # the cell's own error is already shown; nothing deployed
        model = self._model(args, ns, cell is not None)
        example = self._example(args.example)
        from ..deployment.api import deploy

        try:
            return deploy(
                model,
                target=args.target,
                name=args.name,
                example=example,
                format=args.format,
                out=args.out,
                from_run=args.from_run,
                tolerance=args.tolerance,
                **_ray_options(args),
                **{dest: getattr(args, dest) for dest in SERVING_DESTS},
            )
        except _refusals() as exc:
            raise UsageError(str(exc)) from None

    def _model(self, args: Any, ns: CellNamespace, has_cell: bool) -> Any:
        """The model to deploy (None for --from-run): the `model` the cell assigned, or the
        variable --model names; a `model` left from an earlier cell is refused."""
        if args.from_run is not None:
            if args.model:
                raise UsageError("--from-run deploys the run's model; leave out --model")
            return None
        if not has_cell and not args.model:
            raise UsageError(
                "%deploy without a cell needs the model named: --model VAR (e.g. --model "
                "model) or --from-run RUN; or use %%deploy with a cell that assigns `model`"
            )
        if args.model and args.model not in ns.ns:
            raise UsageError(
                f"no variable `{args.model}` in the notebook: define it in the cell "
                "(model = MyModel(...)), name another with --model VAR, or use --from-run RUN"
            )
        return ns.required("model", args.model, "torch.nn.Module", "--model")

    def _example(self, expression: str | None) -> Any:
        if not expression:
            return None
        try:
            return self.shell.ev(expression)
        except Exception as exc:
            raise UsageError(
                f"--example {expression!r} failed: {type(exc).__name__}: {exc}"
            ) from None

    @magic_arguments()
    @argument("--status", help="only deployments with this status (running, stopped, lost, ...)")
    @argument("--target", help="only deployments of this target (local, bundle, kserve, ray)")
    @line_magic
    def deployments(self, line: str = "") -> Any:
        """List the deployments of the workspace (name, target, status, url, format, ...):
        a DataFrame, shown as a table for reading (see jupyter_ext.tables).

        Example: %deployments --status running
        """
        args = parse(self.deployments, line)
        from ..deployment.api import deployments

        try:
            return deployments(status=args.status, target=args.target)
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("names", nargs="+", help="deployment name(s)")
    @argument("--remove", action="store_true", help="also forget it and delete its artifact")
    @line_magic
    def undeploy(self, line: str = "") -> None:
        """Stop deployment(s) by name; a local server's whole process group ends and its port
        is free on return. Example: %undeploy iris"""
        args = parse(self.undeploy, line)
        from ..deployment.api import get_deployment

        try:
            found = [get_deployment(n) for n in args.names]
        except LookupError as exc:
            raise UsageError(str(exc)) from None
        for dep in found:
            try:
                if args.remove:
                    dep.remove()
                else:
                    dep.stop()
            except _refusals() as exc:  # a cluster that does not answer, say
                raise UsageError(f"{dep.name}: {exc}") from None
            if dep.target in ("bundle", "kserve"):
                print(f"Removed bundle {dep.name} from the list (its files stay in {dep.path}).")
            elif dep.target == "ray":
                cluster = dep.info.get("cluster", "the cluster")
                print(
                    f"Removed the Serve application {dep.name!r} from {cluster}; its other "
                    "Serve applications are untouched."
                )
            else:
                port = dep.url.rsplit(":", 1)[1] if dep.url else "?"
                print(f"Stopped {dep.name}; port {port} is free.")
