"""Ray cluster addresses: what a person types, and the two addresses we need from it.

ADDRESS is what ``ray job submit --address`` takes: the dashboard (Jobs API) address
``http://HOST:8265`` (also ``https://``, and ``HOST:PORT`` without a scheme meaning http),
a Ray Client address ``ray://HOST:10001``, or ``auto`` (the local cluster, found the way
Ray finds it). From it we keep the dashboard URL (Jobs and State REST APIs, over HTTP) and
the Ray Client address (``ray.init(address=...)``, to reach actors from outside the
cluster). Parsing never touches the network, except ``auto``, which asks Ray.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from dataclasses import dataclass

#: Ray's default ports on a head node
DASHBOARD_PORT = 8265
CLIENT_PORT = 10001
_GCS_PORT = 6379

FORMS = (
    "http://HOST:8265 (the Ray dashboard, as `ray job submit --address` takes it), "
    "https://HOST[:PORT][/PATH], HOST:PORT (http), ray://HOST:10001 (Ray Client) or auto "
    "(the local cluster)"
)


class ClusterUnreachable(ConnectionError):
    """No Ray cluster answers at an address: the message names it and says what to check.

    Example::

        >>> str(ClusterUnreachable("http://10.0.0.5:8265", "connection refused"))[:62]
        'no Ray cluster answers at http://10.0.0.5:8265 (connection ref'
    """

    def __init__(self, address: str, reason: str, hint: str | None = None) -> None:
        self.address = address
        self.reason = reason
        if hint is None:
            hint = (
                "Check that the head is running (`ray status` on it), that this is its "
                f"dashboard port ({DASHBOARD_PORT} unless `--dashboard-port` says otherwise; "
                f"{_GCS_PORT} is the GCS port and {CLIENT_PORT} the Ray Client port), and that "
                "the dashboard accepts connections from here: start the head with "
                "`ray start --head --dashboard-host 0.0.0.0`."
            )
        super().__init__(f"no Ray cluster answers at {address} ({reason}). {hint}")


@dataclass(frozen=True)
class ClusterAddress:
    """Where a Ray cluster is: ``dashboard`` (http(s) URL of the Jobs and State REST APIs),
    ``client`` (the Ray Client address ``ray.init`` takes from outside the cluster) and
    ``text`` (the address as the user wrote it).

    Example::

        >>> a = parse_address("10.0.0.5:8265")
        >>> a.dashboard, a.client, a.text
        ('http://10.0.0.5:8265', 'ray://10.0.0.5:10001', '10.0.0.5:8265')
    """

    dashboard: str
    client: str
    text: str

    def __str__(self) -> str:
        return self.dashboard


def parse_address(text: str, client: str | None = None) -> ClusterAddress:
    """The cluster at ``text`` (an ADDRESS as ``ray job submit --address`` takes it).

    For a dashboard address the Ray Client address defaults to the head's Ray Client port,
    ``ray://HOST:10001``; ``client=`` gives another. For ``ray://HOST:PORT`` the dashboard is
    taken to be ``http://HOST:8265`` (Ray's own ``ray job submit`` would connect a Ray
    Client to ask; give the dashboard address with ``client=`` when it is elsewhere).
    ``auto`` finds the local cluster as Ray does: ``RAY_API_SERVER_ADDRESS`` or
    ``RAY_ADDRESS``, else the cluster the last ``ray start`` on this machine recorded.

    Raises ValueError for text that is no address (saying which forms are), and
    :class:`ClusterUnreachable` when ``auto`` finds no running cluster.

    Example::

        >>> parse_address("http://head:8265").client
        'ray://head:10001'
        >>> parse_address("ray://head:10001").dashboard
        'http://head:8265'
        >>> a = parse_address("https://ray.example.com/dash/", client="ray://10.0.0.5")
        >>> a.dashboard, a.client
        ('https://ray.example.com/dash', 'ray://10.0.0.5:10001')
    """
    if not isinstance(text, str):
        raise ValueError(f"a cluster address is text such as {FORMS}; got {text!r}")
    raw = text
    text = text.strip()
    if client is not None:
        client = _client_address(client)
    if not text:
        raise ValueError(f"the cluster address is empty; give one of {FORMS}")
    if text.lower() == "local":
        raise ValueError(
            "'local' is this machine, not a cluster address: use_cluster('local') "
            "(or %cluster local) sends runs back here"
        )
    if text.lower() == "auto":
        return _auto(raw, client)
    if "://" not in text:
        return _dashboard(f"http://{text}", raw, client, schemeless=True)
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        return _dashboard(text, raw, client)
    if scheme == "ray":
        ray_client = _client_address(text)
        if client is not None and client != ray_client:
            raise ValueError(
                f"{text!r} is already a Ray Client address; give client= only with a "
                "dashboard address (http://HOST:8265)"
            )
        host = urllib.parse.urlsplit(ray_client).hostname or ""
        return ClusterAddress(f"http://{_netloc(host, DASHBOARD_PORT)}", ray_client, raw)
    raise ValueError(f"{text!r} is not a Ray cluster address ({scheme}:// is not one of {FORMS})")


def _netloc(host: str, port: int | None) -> str:
    """host:port with IPv6 hosts in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _split(url: str, what: str) -> urllib.parse.SplitResult:
    """``url`` split, with a clear error for a bad port or a missing host."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises ValueError for a port out of range or not a number)
    except ValueError:
        raise ValueError(
            f"{what} has no valid port (a number from 1 to 65535), e.g. http://HOST:8265"
        ) from None
    if not parts.hostname:
        raise ValueError(f"{what} names no host; give one of {FORMS}")
    return parts


def _dashboard(url: str, raw: str, client: str | None, schemeless: bool = False) -> ClusterAddress:
    what = repr(raw.strip())
    parts = _split(url, what)
    if parts.query or parts.fragment:
        raise ValueError(f"{what} carries a query or fragment; give the dashboard's base URL")
    if schemeless and (parts.port is None or parts.path):
        # "headnode" alone is more likely a typo than a dashboard on port 80
        host = parts.hostname or raw.strip()
        raise ValueError(
            f"{what} is not a Ray cluster address: without a scheme give HOST:PORT, "
            f"e.g. http://{_netloc(host, DASHBOARD_PORT)} (accepted: {FORMS})"
        )
    assert parts.hostname is not None
    dashboard = f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"
    return ClusterAddress(dashboard, client or f"ray://{_netloc(parts.hostname, CLIENT_PORT)}", raw)


def _client_address(text: str) -> str:
    """A Ray Client address, normalised to ray://HOST:PORT (port 10001 when omitted)."""
    if not isinstance(text, str) or not text.strip().lower().startswith("ray://"):
        raise ValueError(
            f"the Ray Client address must look like ray://HOST:{CLIENT_PORT}; got {text!r}"
        )
    parts = _split(text.strip(), repr(text))
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise ValueError(f"{text!r} has more than ray://HOST:PORT; give ray://HOST:{CLIENT_PORT}")
    assert parts.hostname is not None
    return f"ray://{_netloc(parts.hostname, parts.port or CLIENT_PORT)}"


def _auto(raw: str, client: str | None) -> ClusterAddress:
    """The local cluster, found with Ray's own lookup (environment, then the address the
    last ``ray start`` on this machine recorded, then a running GCS process)."""
    for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"):
        env = os.environ.get(name, "").strip()
        if "://" in env:  # a dashboard or Ray Client address: parse it as one
            found = parse_address(env, client)
            return ClusterAddress(found.dashboard, found.client, raw)
    from ray._private import services
    from ray.dashboard.utils import ray_address_to_api_server_url

    try:
        gcs = services.canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError as exc:
        raise ClusterUnreachable(
            "auto",
            "no running Ray cluster found on this machine",
            "Start one (`make cluster`, or `ray start --head`), set RAY_ADDRESS, or give "
            f"the cluster's address: {FORMS}.",
        ) from exc
    host, _, port = gcs.rpartition(":")
    host = host.strip("[]")
    # Ray's lookup reads the dashboard address from the GCS and retries for a long while
    # when the GCS is gone (a stale record of a stopped cluster): ask the port first.
    try:
        socket.create_connection((host, int(port)), timeout=2.0).close()
    except OSError as exc:
        raise ClusterUnreachable(
            f"auto (GCS {gcs})",
            f"the cluster recorded on this machine does not answer: {exc}",
            "Start it again (`make cluster`, or `ray start --head`) or give the address "
            f"of a running cluster: {FORMS}.",
        ) from None
    dashboard = ray_address_to_api_server_url(gcs)
    return ClusterAddress(dashboard, client or f"ray://{_netloc(host, CLIENT_PORT)}", raw)
