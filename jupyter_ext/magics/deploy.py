"""%%deploy, %deployments and %undeploy."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from ._args import parse

# what deploy() raises for input it refuses (and DeployError, added on first use)
_REFUSALS: tuple[type[BaseException], ...] = (ValueError, TypeError, LookupError, OSError)


def _refusals() -> tuple[type[BaseException], ...]:
    from ..deployment.export import DeployError

    return (*_REFUSALS, DeployError)


@magics_class
class DeployMagics(Magics):
    @magic_arguments()
    @argument("--target", choices=["local", "bundle"], default="local")
    @argument("--name", help="deployment name (default: the model class, lower case)")
    @argument("--model", help="variable holding the model (default: model)")
    @argument(
        "--example",
        help="expression for an example batch, e.g. 'torch.randn(4, 13)' "
        "(default: model.example_input_array)",
    )
    @argument("--format", choices=["auto", "pt2", "onnx", "pickle"], default="auto")
    @argument("--port", type=int, help="local: port to serve on (default: a free one)")
    @argument("--host", default="127.0.0.1", help="local: address to bind")
    @argument("--out", help="bundle: directory to write (default: ./NAME_bundle)")
    @argument("--from-run", dest="from_run", help="deploy this run's best checkpoint")
    @argument("--engine", choices=["fastapi", "litserve"], default="fastapi")
    @argument("--api-key", dest="api_key", help="require this key (X-API-Key header)")
    @argument("--workers", type=int, default=1, help="litserve: workers per device")
    @argument("--max-batch-size", type=int, default=1, help="litserve: request batching")
    @argument("--batch-timeout", type=float, default=0.0, help="litserve: batch wait (s)")
    @argument("--threads", type=int, help="intra-op threads of the model runtime")
    @argument("--device", default="cpu", help="where the server runs the model: cpu, cuda:N")
    @argument("--tolerance", type=float, default=1e-4, help="parity tolerance")
    @line_cell_magic
    def deploy(self, line: str = "", cell: str | None = None) -> Any:
        """Run the cell, then deploy its `model` to a local server or a bundle.

        The model is exported (pt2, onnx or pickle; auto picks the fastest that passes the
        parity check), served on 127.0.0.1 and health-checked; the example's answer over
        HTTP is compared with the in-notebook model's. Example:

            %%deploy --name iris --example 'torch.randn(4, 4)'
            model = IrisNet().eval()
        """
        args = parse(self.deploy, line)
        if cell is not None and cell.strip():
            result = self.shell.run_cell(cell)
            if not result.success:
                return None  # the cell's own error is already shown
        ns = self.shell.user_ns
        model = None
        if args.from_run is not None:
            if args.model:
                raise UsageError("--from-run deploys the run's model; leave out --model")
        else:
            var = args.model or "model"
            if var not in ns:
                raise UsageError(
                    f"no variable `{var}` in the notebook: define it in the cell "
                    "(model = MyModel(...)), name another with --model VAR, or use --from-run RUN"
                )
            model = ns[var]
        example = None
        if args.example:
            try:
                example = self.shell.ev(args.example)
            except Exception as exc:
                raise UsageError(
                    f"--example {args.example!r} failed: {type(exc).__name__}: {exc}"
                ) from None
        from ..deployment.api import deploy

        try:
            return deploy(
                model,
                target=args.target,
                name=args.name,
                example=example,
                format=args.format,
                port=args.port,
                host=args.host,
                out=args.out,
                from_run=args.from_run,
                engine=args.engine,
                api_key=args.api_key,
                workers=args.workers,
                max_batch_size=args.max_batch_size,
                batch_timeout=args.batch_timeout,
                threads=args.threads,
                device=args.device,
                tolerance=args.tolerance,
            )
        except _refusals() as exc:
            raise UsageError(str(exc)) from None

    @line_magic
    def deployments(self, line: str = "") -> Any:
        """List every deployment of the workspace (name, target, status, url, format, ...)."""
        if line.strip():
            raise UsageError("%deployments takes no arguments")
        from ..deployment.api import deployments

        return deployments()

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
            if args.remove:
                dep.remove()
            else:
                dep.stop()
            if dep.target == "bundle":
                print(f"Removed bundle {dep.name} from the list (its files stay in {dep.path}).")
            else:
                port = dep.url.rsplit(":", 1)[1] if dep.url else "?"
                print(f"Stopped {dep.name}; port {port} is free.")
