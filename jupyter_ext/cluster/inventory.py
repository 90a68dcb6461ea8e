"""What a Ray cluster has: its nodes with CPUs, GPUs by type and memory, free and total.

Read over the dashboard's HTTP address with Ray's own clients (the State API's node list,
the Jobs API's version, the dashboard's cluster status for what is in use): no driver
connects, so asking costs the cluster nothing and works from anywhere the dashboard port
is reachable. :func:`check_request` refuses, before launch, a run the cluster cannot hold.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .address import ClusterAddress, ClusterUnreachable, parse_address

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ClusterInfo",
    "ClusterRequestError",
    "ClusterUnreachable",
    "NodeInfo",
    "check_request",
    "cluster_info",
]

_GIB = 1024**3
_TYPE_PREFIX = "accelerator_type:"
_TYPE_LABEL = "ray.io/accelerator-type"


class ClusterRequestError(ValueError):
    """A run asks for more than the cluster has (said with what it has)."""


@dataclass(frozen=True)
class NodeInfo:
    """One node of a Ray cluster. ``memory`` is Ray's ``memory`` resource in bytes (what
    tasks and actors may reserve); the ``*_free`` values are None where the cluster has
    not reported its use yet (a node that just joined).

    Example::

        >>> NodeInfo("ab12", "10.0.0.5", "10.0.0.5", True, True, 16.0, 2.0, 64 * 2**30,
        ...          gpu_type="A100").gpu_text()
        '2 A100'
    """

    node_id: str
    ip: str
    name: str
    alive: bool
    head: bool
    cpus: float
    gpus: float
    memory: float
    gpu_type: str | None = None
    cpus_free: float | None = None
    gpus_free: float | None = None
    memory_free: float | None = None
    object_store_memory: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    state_message: str | None = None

    def gpu_text(self) -> str:
        """The node's GPUs in words: '2 A100', '1 GPU', 'none'."""
        if not self.gpus:
            return "none"
        return f"{_count(self.gpus)} {self.gpu_type or ('GPU' if self.gpus == 1 else 'GPUs')}"


@dataclass(frozen=True)
class ClusterInfo:
    """A look at a Ray cluster: its ``address``, ``ray_version``, ``nodes`` (dead ones
    too, marked) and when it was taken; totals count alive nodes only.

    Shows as a table of nodes in a notebook and as text elsewhere, headed by where runs
    of this kernel go.

    Example::

        >>> info = cluster_info("http://127.0.0.1:8265")  # doctest: +SKIP
        >>> info.cpus, info.gpus, info.summary()  # doctest: +SKIP
        (2.0, 0.0, '1 node, 2 CPUs (2 free), 0 GPUs, 8.0 GiB memory')
    """

    address: ClusterAddress
    ray_version: str
    nodes: tuple[NodeInfo, ...]
    taken_at: float = field(default_factory=time.time)
    elapsed_s: float = 0.0

    # -- totals over alive nodes --------------------------------------------------------
    @property
    def alive_nodes(self) -> tuple[NodeInfo, ...]:
        return tuple(n for n in self.nodes if n.alive)

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.alive_nodes)

    @property
    def gpus(self) -> float:
        return sum(n.gpus for n in self.alive_nodes)

    @property
    def memory(self) -> float:
        return sum(n.memory for n in self.alive_nodes)

    @property
    def cpus_free(self) -> float | None:
        return _free_sum(n.cpus_free for n in self.alive_nodes)

    @property
    def gpus_free(self) -> float | None:
        return _free_sum(n.gpus_free for n in self.alive_nodes if n.gpus)

    @property
    def memory_free(self) -> float | None:
        return _free_sum(n.memory_free for n in self.alive_nodes)

    @property
    def gpus_by_type(self) -> dict[str, float]:
        """GPUs of alive nodes by accelerator type ('GPU' where the node names none).

        Example::

            >>> info.gpus_by_type  # doctest: +SKIP
            {'A100': 8.0, 'T4': 2.0}
        """
        out: dict[str, float] = {}
        for n in self.alive_nodes:
            if n.gpus:
                key = n.gpu_type or "GPU"
                out[key] = out.get(key, 0.0) + n.gpus
        return out

    # -- words -------------------------------------------------------------------------
    def summary(self) -> str:
        """One line: '2 nodes, 32 CPUs (30 free), 4 GPUs (2 A100, 2 T4; 3 free), 120.0 GiB
        memory (100.0 GiB free)'.

        Example::

            >>> info.summary()  # doctest: +SKIP
            '1 node, 2 CPUs (2 free), 0 GPUs, 8.0 GiB memory (8.0 GiB free)'
        """
        alive = len(self.alive_nodes)
        dead = len(self.nodes) - alive
        parts = [f"{alive} node{'' if alive == 1 else 's'}" + (f" ({dead} dead)" if dead else "")]
        parts.append(f"{_count(self.cpus)} CPU{_s(self.cpus)}{_free_note(self.cpus_free)}")
        gpus = f"{_count(self.gpus)} GPU{_s(self.gpus)}"
        if self.gpus:
            kinds = ", ".join(f"{_count(v)} {k}" for k, v in sorted(self.gpus_by_type.items()))
            free = self.gpus_free
            gpus += f" ({kinds}" + ("" if free is None else f"; {_count(free)} free") + ")"
        parts.append(gpus)
        mem = f"{_gib(self.memory)} memory"
        if self.memory_free is not None:
            mem += f" ({_gib(self.memory_free)} free)"
        parts.append(mem)
        return ", ".join(parts)

    def headline(self) -> str:
        """Where runs of this kernel go, and what this cluster has, in one sentence."""
        from .state import current_cluster

        here = f"the Ray cluster at {self.address.dashboard}"
        current = current_cluster()
        if current is not None and current.dashboard == self.address.dashboard:
            return f"Runs of this kernel go to {here}: {self.summary()}"
        where = "this machine" if current is None else f"the Ray cluster at {current.dashboard}"
        return f"{here[0].upper()}{here[1:]}: {self.summary()} (runs of this kernel go to {where})"

    def frame(self) -> pd.DataFrame:
        """One row per node: node, ip, role, state, CPUs, GPUs (type), memory in GiB, free
        and total (NaN where not reported).

        Example::

            >>> info.frame().columns.tolist()  # doctest: +SKIP
            ['node', 'ip', 'role', 'state', 'cpus', 'cpus_free', 'gpus', 'gpus_free', ...]
        """
        import pandas as pd

        nan = float("nan")
        rows = [
            {
                "node": n.name,
                "ip": n.ip,
                "role": "head" if n.head else "worker",
                "state": "alive" if n.alive else "dead",
                "cpus": n.cpus,
                "cpus_free": nan if n.cpus_free is None else n.cpus_free,
                "gpus": n.gpus,
                "gpus_free": nan if n.gpus_free is None else n.gpus_free,
                "gpu_type": n.gpu_type or "",
                "memory_gib": n.memory / _GIB,
                "memory_free_gib": nan if n.memory_free is None else n.memory_free / _GIB,
                "node_id": n.node_id,
            }
            for n in self.nodes
        ]
        return pd.DataFrame(rows, columns=_FRAME_COLUMNS)

    def __str__(self) -> str:
        lines = [self.headline()]
        header = (
            "node",
            "role",
            "state",
            "CPUs free/total",
            "GPUs free/total",
            "memory free/total",
        )
        rows = [header]
        for n in self.nodes:
            gpus = f"{_free_text(n.gpus_free)}/{_count(n.gpus)}"
            if n.gpus:
                gpus += f" {n.gpu_type or 'GPU'}"
            rows.append((
                n.name if n.name == n.ip else f"{n.name} ({n.ip})",
                "head" if n.head else "worker",
                "alive" if n.alive else "dead",
                f"{_free_text(n.cpus_free)}/{_count(n.cpus)}",
                gpus,
                f"{_free_text(n.memory_free, _gib)}/{_gib(n.memory)}",
            ))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for r in rows:
            lines.append(
                "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            )
        lines.append(f"Ray {self.ray_version}")
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("ClusterInfo(...)" if cycle else str(self))

    def _repr_html_(self) -> str:
        from .. import tables as T

        def free_total(free: float | None, total: float, fmt: Any = None) -> list[T.Cell]:
            show = fmt or _count
            free_cell = T.Cell("?" if free is None else T._esc(show(free)), numeric=True,
                               title="" if free is not None else "not reported yet")  # fmt: skip
            return [free_cell, T.Cell(T._esc(show(total)), numeric=True)]

        cpu = [free_total(n.cpus_free, n.cpus) for n in self.nodes]
        gpu = [free_total(n.gpus_free, n.gpus) for n in self.nodes]
        mem = [free_total(n.memory_free, n.memory, _gib) for n in self.nodes]
        cols = [
            T._name_column("node", [n.name for n in self.nodes]),
            T.Column("role", [T.Cell("head" if n.head else "worker") for n in self.nodes],
                     nowrap=True),
            T.Column("state", [T.Cell(T.badge("alive" if n.alive else "dead"),
                                      title=n.state_message or "") for n in self.nodes],
                     nowrap=True),
            T.Column("free", [c[0] for c in cpu], group="CPUs", nowrap=True),
            T.Column("total", [c[1] for c in cpu], group="CPUs", nowrap=True),
            T.Column("free", [c[0] for c in gpu], group="GPUs", nowrap=True),
            T.Column("total", [c[1] for c in gpu], group="GPUs", nowrap=True),
            T.Column("type", [T.Cell(T._esc(n.gpu_type or ("GPU" if n.gpus else "")))
                              for n in self.nodes], group="GPUs", nowrap=True),
            T.Column("free", [c[0] for c in mem], group="memory", nowrap=True),
            T.Column("total", [c[1] for c in mem], group="memory", nowrap=True),
            T._id_column("node id", [n.node_id for n in self.nodes]),
        ]  # fmt: skip
        head = (
            f'<div class="jupyter-ext-cluster" style="font-size:13px;margin:0 0 4px 0">'
            f"{html.escape(self.headline())}</div>"
        )
        caption = f"Ray {html.escape(self.ray_version)}; looked {T.ago(self.taken_at)}"
        return head + T.render(cols, caption, empty="no nodes")


_FRAME_COLUMNS = [
    "node", "ip", "role", "state", "cpus", "cpus_free", "gpus", "gpus_free", "gpu_type",
    "memory_gib", "memory_free_gib", "node_id",
]  # fmt: skip


def _count(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _s(x: float) -> str:
    return "" if x == 1 else "s"


def _gib(x: float) -> str:
    return f"{x / _GIB:.1f} GiB"


def _free_text(x: float | None, fmt: Any = _count) -> str:
    return "?" if x is None else fmt(x)


def _free_note(free: float | None) -> str:
    return "" if free is None else f" ({_count(free)} free)"


def _free_sum(values: Any) -> float | None:
    """The sum, or None if any value is unknown (a total that silently skips a node lies)."""
    total = 0.0
    for v in values:
        if v is None:
            return None
        total += v
    return total


# -- asking the cluster ------------------------------------------------------------------
def cluster_info(address: str | ClusterAddress, timeout: float = 5.0) -> ClusterInfo:
    """Look at the Ray cluster at ``address`` (an ADDRESS string or a
    :class:`ClusterAddress`): its nodes with CPUs, GPUs by type and memory, free and
    total, alive or dead, head or not, and its Ray version. Each HTTP request waits at
    most ``timeout`` seconds.

    Raises :class:`ClusterUnreachable` (a ConnectionError) naming the address and what to
    check when no Ray dashboard answers there.

    Example::

        >>> info = cluster_info("http://127.0.0.1:8265")  # doctest: +SKIP
        >>> [n.cpus for n in info.nodes]  # doctest: +SKIP
        [2.0]
    """
    if not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    addr = address if isinstance(address, ClusterAddress) else parse_address(address)
    t0 = time.perf_counter()
    client = _client(addr)
    version = _get_json(client, addr, "/api/version", timeout)
    if not isinstance(version, Mapping) or "ray_version" not in version:
        raise ClusterUnreachable(
            addr.dashboard, "something answers there, but not a Ray dashboard's Jobs API"
        )
    states = _nodes(client, addr, timeout)
    usage = _usage_by_node(client, addr, timeout)
    nodes = tuple(sorted((_node(s, usage.get(s.node_id)) for s in states), key=_node_order))
    return ClusterInfo(
        address=addr,
        ray_version=str(version["ray_version"]),
        nodes=nodes,
        elapsed_s=time.perf_counter() - t0,
    )


def _node_order(n: NodeInfo) -> tuple[Any, ...]:
    return (not n.alive, not n.head, n.name, n.node_id)


def _client(addr: ClusterAddress) -> Any:
    """Ray's State API client for exactly ``addr.dashboard``.

    Ray's own StateApiClient constructor swaps the address it is given for RAY_ADDRESS /
    RAY_API_SERVER_ADDRESS when either is set (and connects a Ray Client for ray://); the
    base SubmissionClient takes the URL as it is and adds what Ray adds to every request
    (the token of Ray's token authentication, cookies, TLS verification).
    """
    from ray.dashboard.modules.dashboard_sdk import SubmissionClient
    from ray.util.state.api import StateApiClient

    client = StateApiClient.__new__(StateApiClient)
    SubmissionClient.__init__(
        client, address=addr.dashboard, headers={"Content-Type": "application/json"}
    )
    return client


def _unreachable(addr: ClusterAddress, exc: BaseException) -> ClusterUnreachable:
    import requests

    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
        reason = "no answer in time"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        if "Connection refused" in text:
            reason = "connection refused"
        elif "Name or service not known" in text or "nodename nor servname" in text:
            reason = "the host name is not known"
        else:
            reason = f"cannot connect: {type(exc).__name__}"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return ClusterUnreachable(addr.dashboard, reason)


def _get_json(client: Any, addr: ClusterAddress, endpoint: str, timeout: float) -> Any:
    import requests
    from ray.exceptions import AuthenticationError

    try:
        r = client._do_request("GET", endpoint, timeout=timeout)
    except requests.exceptions.RequestException as exc:
        raise _unreachable(addr, exc) from None
    except AuthenticationError as exc:
        # Ray's message says where the token goes; the first lines are the ones that matter
        raise ClusterUnreachable(
            addr.dashboard,
            "it requires Ray's token authentication and refused this kernel's request",
            " ".join(str(exc).split("\n\n")[1:2])
            or "Set RAY_AUTH_MODE=token and give the cluster's token (RAY_AUTH_TOKEN or "
            "~/.ray/auth_token) in the kernel's environment.",
        ) from None
    if r.status_code != 200:
        raise ClusterUnreachable(
            addr.dashboard,
            f"HTTP {r.status_code} for {endpoint}: something answers there, but not a Ray "
            "dashboard",
        )
    try:
        return r.json()
    except ValueError:
        raise ClusterUnreachable(
            addr.dashboard, f"{endpoint} did not answer JSON: not a Ray dashboard"
        ) from None


def _nodes(client: Any, addr: ClusterAddress, timeout: float) -> list[Any]:
    import requests
    from ray.util.state.common import ListApiOptions, StateResource
    from ray.util.state.exception import RayStateApiException

    options = ListApiOptions(limit=10_000, timeout=max(1, math.ceil(timeout)), detail=True)
    try:
        return client.list(StateResource.NODES, options=options, raise_on_missing_output=False)
    except (requests.exceptions.RequestException, RayStateApiException) as exc:
        raise _unreachable(addr, exc) from None


def _usage_by_node(client: Any, addr: ClusterAddress, timeout: float) -> dict[str, dict]:
    """{node id: {resource: [used, total]}} from the dashboard's cluster status (what
    ``ray status`` reads); {} where the cluster has not reported it yet.

    The dashboard camel-cases keys (``objectStoreMemory``); CPU, GPU and memory, the
    ones read here, keep their names.
    """
    body = _get_json(client, addr, "/api/cluster_status", timeout)
    try:
        report = body["data"]["clusterStatus"]["loadMetricsReport"]
        by_node = report.get("usageByNode") or {}
    except (KeyError, TypeError, AttributeError):
        return {}
    return {str(k): v for k, v in by_node.items() if isinstance(v, Mapping)}


def _free(usage: Mapping[str, Any] | None, key: str, total: float) -> float | None:
    if usage is None:
        return None
    pair = usage.get(key)
    if pair is None:
        return total if total == 0 else None  # a resource the node lacks is all free
    try:
        used, _ = pair
        return max(0.0, total - float(used))
    except (TypeError, ValueError):
        return None


def _node(state: Any, usage: Mapping[str, Any] | None) -> NodeInfo:
    res = {str(k): float(v) for k, v in (state.resources_total or {}).items()}
    labels = state.labels or {}
    gpu_type = next((k[len(_TYPE_PREFIX) :] for k in res if k.startswith(_TYPE_PREFIX)), None)
    gpu_type = gpu_type or labels.get(_TYPE_LABEL) or None
    alive = str(state.state).upper() == "ALIVE"
    cpus, gpus, memory = res.get("CPU", 0.0), res.get("GPU", 0.0), res.get("memory", 0.0)
    usage = usage if alive else None
    return NodeInfo(
        node_id=str(state.node_id),
        ip=str(state.node_ip),
        name=str(state.node_name or state.node_ip),
        alive=alive,
        head=bool(state.is_head_node),
        cpus=cpus,
        gpus=gpus,
        memory=memory,
        gpu_type=gpu_type,
        cpus_free=_free(usage, "CPU", cpus),
        gpus_free=_free(usage, "GPU", gpus),
        memory_free=_free(usage, "memory", memory),
        object_store_memory=res.get("object_store_memory", 0.0),
        resources=res,
        state_message=getattr(state, "state_message", None),
    )


# -- what a run may ask for ------------------------------------------------------------
_GPU_NAMES = ("gpu", "cuda")


def _devices_count(devices: Any, on_gpu: bool) -> int | None:
    """How many devices per node ``devices`` asks for; None for 'as many as a node has'
    (``"auto"``, and ``-1`` on GPUs). Lightning's forms: an int, its text, ``"auto"``, a
    list of indices (or their text "0,1")."""
    if isinstance(devices, bool):
        raise ValueError(f"devices={devices!r} is not understood; give a number, a list or 'auto'")
    if isinstance(devices, str):
        text = devices.strip().lower()
        if text == "auto":
            return None if on_gpu else 1  # Lightning's auto on CPU is one process
        if "," in text or text.startswith("["):
            items = [i for i in text.strip("[]").split(",") if i.strip()]
            try:
                devices = [int(i) for i in items]
            except ValueError:
                raise ValueError(
                    f"devices={devices!r} is not understood; give a number (2), device "
                    "indices (0,1) or auto"
                ) from None
        else:
            try:
                devices = int(text)
            except ValueError:
                raise ValueError(
                    f"devices={devices!r} is not understood; give a number (2), device "
                    "indices (0,1) or auto"
                ) from None
    if isinstance(devices, (list, tuple)):
        if not on_gpu:
            raise ValueError(
                f"devices={list(devices)!r}: on CPU, devices is a number of processes "
                "(an int > 0), not a list of indices"
            )
        if not devices:
            raise ValueError("devices=[] asks for no device; give at least one")
        return len(devices)
    if isinstance(devices, int):
        if devices == -1 and on_gpu:
            return None
        if devices < 1:
            raise ValueError(f"devices={devices} asks for no device; give 1 or more (or auto)")
        return devices
    raise ValueError(f"devices={devices!r} is not understood; give a number, a list or 'auto'")


def check_request(info: ClusterInfo, *, accelerator: Any = "auto", devices: Any = "auto",
                  num_nodes: Any = 1) -> None:  # fmt: skip
    """Refuse, before launch, a run the cluster cannot hold, saying what it has: GPUs
    asked and none anywhere; more GPUs per node than any node has; more nodes than alive
    nodes with enough GPUs; more CPU worker processes than the cluster has CPUs.

    Takes the Trainer's forms: ``accelerator`` auto/cpu/gpu/cuda (``auto`` means GPUs
    where the cluster has any, as Lightning's auto picks them on the node), ``devices``
    an int, its text, a list of indices or ``"auto"``, ``num_nodes`` an int. Raises
    :class:`ClusterRequestError` (a ValueError) for what the cluster lacks, ValueError
    for values that are no such form.

    Example::

        >>> check_request(info, accelerator="gpu", devices=1, num_nodes=1)  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        ClusterRequestError: the cluster at http://127.0.0.1:8265 has no GPU (1 node: 2 CPUs,
        0 GPUs); use --accelerator cpu or add GPU nodes
    """
    kind = str(accelerator).strip().lower() if accelerator is not None else "auto"
    if kind not in ("auto", "cpu", *_GPU_NAMES):
        raise ValueError(
            f"accelerator={accelerator!r} cannot run on a Ray cluster; use cpu, gpu (cuda) or auto"
        )
    if isinstance(num_nodes, str) and num_nodes.strip().isdigit():
        num_nodes = int(num_nodes)
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes={num_nodes!r} is not a number of nodes (an int >= 1)")
    alive = info.alive_nodes
    where = f"the cluster at {info.address.dashboard}"
    has = (
        f"{len(alive)} node{_s(len(alive))}: {_count(info.cpus)} CPU{_s(info.cpus)}, "
        f"{_count(info.gpus)} GPU{_s(info.gpus)}"
    )
    if not alive:
        raise ClusterRequestError(f"{where} has no alive node; start its head or add nodes")
    on_gpu = kind in _GPU_NAMES or (kind == "auto" and info.gpus > 0)
    per_node = _devices_count(devices, on_gpu)
    if not on_gpu:
        workers = (per_node or 1) * num_nodes
        if workers > info.cpus:
            raise ClusterRequestError(
                f"the run asks for {workers} CPU worker processes (devices={per_node} x "
                f"num_nodes={num_nodes}) but {where} has only {_count(info.cpus)} CPU"
                f"{_s(info.cpus)} ({has}); ask for at most {int(info.cpus)} in all, e.g. "
                f"--devices {int(info.cpus)} --num-nodes 1"
            )
        return
    if info.gpus == 0:
        raise ClusterRequestError(
            f"{where} has no GPU ({has}); use --accelerator cpu or add GPU nodes"
        )
    nodes_text = ", ".join(f"{n.name}: {n.gpu_text()}" for n in alive)
    most = max(n.gpus for n in alive)
    if per_node is not None and per_node > most:
        raise ClusterRequestError(
            f"the run asks for {per_node} GPUs per node but no node of {where} has more than "
            f"{_count(most)} ({nodes_text}); use --devices {_count(most)} or fewer per node "
            "and more nodes (--num-nodes)"
        )
    need = per_node or 1
    enough = [n for n in alive if n.gpus >= need]
    if num_nodes > len(enough):
        raise ClusterRequestError(
            f"the run asks for {num_nodes} nodes with {need} GPU{_s(need)} each but {where} "
            f"has {len(enough)} such node{_s(len(enough))} ({nodes_text}); use --num-nodes "
            f"{len(enough)} or fewer, or add GPU nodes"
        )
