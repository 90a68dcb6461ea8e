"""A serving process: ``python -m jupyter_ext.deployment.server DIR [--port P] ...``.

Loads the artifact in ``DIR`` and serves it with the chosen engine (FastAPI on uvicorn by
default, or LitServe). A bundle's ``server.py`` calls :func:`main` from its own copy of this
module, with the bundle directory as the only place a pickle may come from.

Security: bound to 127.0.0.1 unless ``--host`` says otherwise. The API key comes from the
``DEPLOY_API_KEY`` environment variable, else the manifest's key hash; binding a host that is
not loopback without either generates a key and prints it, so nothing is ever served
unauthenticated on a network.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

from .protocol import hash_key
from .runtime import Manifest

KEY_ENV = "DEPLOY_API_KEY"
ENGINES = ("fastapi", "litserve")
#: a text-generation deployment's directory holds this file (:mod:`.textgen.engine`)
TEXT_SPEC = "textgen.json"
# LitServe binds only these (its own check); the FastAPI engine takes any address
LITSERVE_HOSTS = ("0.0.0.0", "127.0.0.1", "::")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost).

    Example::

        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0")
        (True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_key(host: str, manifest_hash: str | None) -> tuple[str | None, str | None]:
    """``(key_hash, generated_key)``: the key the server requires, if any.

    Example::

        >>> resolve_key("127.0.0.1", None)  # loopback, no key configured
        (None, None)
    """
    env = os.environ.get(KEY_ENV)
    if env:
        return hash_key(env), None
    if manifest_hash:
        return manifest_hash, None
    if not is_loopback(host):
        key = secrets.token_urlsafe(24)
        return hash_key(key), key
    return None, None


def build_parser(
    default_dir: str | None = None, default_engine: str = "fastapi"
) -> argparse.ArgumentParser:
    """The serving process's command line.

    Example::

        >>> build_parser("model").parse_args(["--port", "9000"]).port
        9000
    """
    p = argparse.ArgumentParser(
        description="Serve a deployed model: POST /predict and the KServe v2 REST API."
    )
    p.add_argument(
        "directory",
        nargs="?" if default_dir else None,
        default=default_dir,
        help="directory with manifest.json and the model artifact",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to bind (default 8080)")
    p.add_argument("--fd", type=int, help="serve on this already-bound socket instead")
    p.add_argument("--engine", choices=ENGINES, default=default_engine)
    p.add_argument("--workers", type=int, default=1, help="LitServe workers per device")
    p.add_argument(
        "--max-batch-size",
        type=int,
        default=1,
        help="dynamic batching: stack up to N concurrent rows into one forward pass (1: off)",
    )
    p.add_argument(
        "--batch-timeout-ms",
        type=float,
        default=0.0,
        help="dynamic batching: how long a request may wait for others (default 0: only "
        "those already queued)",
    )
    p.add_argument("--max-body-mb", type=float, default=16.0, help="request body limit (MiB)")
    p.add_argument(
        "--body-timeout-s",
        type=float,
        default=30.0,
        help="seconds a request body may pause between two reads (408 past it; default 30)",
    )
    p.add_argument(
        "--device", default="cpu", help="cpu, cuda or cuda:N (LitServe: cuda uses every GPU)"
    )
    p.add_argument("--threads", type=int, help="intra-op threads of the model runtime")
    p.add_argument("--log-level", default="warning")
    return p


def main(
    argv: list[str] | None = None,
    *,
    trusted_root: str | os.PathLike[str] | None = None,
    default_dir: str | None = None,
    default_engine: str = "fastapi",
) -> None:
    """Run a server until SIGTERM/SIGINT.

    Example (a bundle's server.py)::

        >>> here = Path(__file__).parent
        >>> main(trusted_root=here, default_dir=str(here / "model"))  # doctest: +SKIP
    """
    args = build_parser(default_dir, default_engine).parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    directory = Path(args.directory)
    if (directory / TEXT_SPEC).is_file():
        _serve_text(args, directory)
        return
    manifest = Manifest.read(directory)
    key_hash, generated = resolve_key(args.host, manifest.api_key_sha256)
    if generated:
        print(
            f"API key (generated because {args.host} is not a loopback address; send it as "
            f"X-API-Key): {generated}",
            flush=True,
        )
    max_body = int(args.max_body_mb * 1024 * 1024)
    if args.max_batch_size < 1 or not 0 <= args.batch_timeout_ms <= 1000:
        sys.exit("--max-batch-size must be >= 1 and --batch-timeout-ms from 0 to 1000")
    if args.body_timeout_s <= 0:
        sys.exit("--body-timeout-s must be positive")
    if args.engine == "litserve":
        from .litserve_engine import serve

        if args.host not in LITSERVE_HOSTS:
            sys.exit(f"--engine litserve binds only {', '.join(LITSERVE_HOSTS)}; got {args.host}")
        serve(
            directory,
            host=args.host,
            port=args.port,
            trusted_root=trusted_root,
            key_hash=key_hash,
            max_body_bytes=max_body,
            workers=args.workers,
            max_batch_size=args.max_batch_size,
            batch_timeout=args.batch_timeout_ms / 1000,
            body_timeout_s=args.body_timeout_s,
            threads=args.threads,
            accelerator="cuda" if args.device.startswith("cuda") else "cpu",
            log_level=args.log_level,
        )
        return

    import uvicorn

    from .app import create_app
    from .runtime import load_predictor

    predictor = load_predictor(
        directory, trusted_root=trusted_root, device=args.device, threads=args.threads
    )
    app = create_app(
        predictor, manifest.spec, key_hash=key_hash, max_body_bytes=max_body,
        body_timeout_s=args.body_timeout_s, max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms, in_thread=args.device != "cpu",
    )  # fmt: skip
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        # uvloop and httptools when installed (uvicorn[standard]; a bundle's requirements
        # have them), else asyncio and h11: the same behaviour, a little slower
        loop="auto",
        http="auto",
    )
    server = uvicorn.Server(config)
    sockets = None
    where = f"{args.host}:{args.port}"
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)  # handed over by the deploying kernel
        sockets = [sock]
        host, port = sock.getsockname()[:2]
        where = f"{host}:{port}"
    print(
        f"serving {manifest.spec.name!r} ({manifest.format}, fastapi) on http://{where}",
        flush=True,
    )
    server.run(sockets=sockets)


def _serve_text(args: argparse.Namespace, directory: Path) -> None:
    """A text-generation deployment (``textgen.json``): the OpenAI routes on transformers."""
    import json

    from .textgen.openai_app import serve

    key_hash, generated = resolve_key(
        args.host, json.loads((directory / TEXT_SPEC).read_text()).get("api_key_sha256")
    )
    if generated:
        print(
            f"API key (generated because {args.host} is not a loopback address; send it as "
            f"Authorization: Bearer KEY): {generated}",
            flush=True,
        )
    serve(
        str(directory), host=args.host, port=args.port, fd=args.fd, key_hash=key_hash,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024), log_level=args.log_level,
    )  # fmt: skip


if __name__ == "__main__":
    # The toolkit's own entry point: pickles may come only from the workspace.
    from ..config import get_config

    main(trusted_root=get_config().home_path)
