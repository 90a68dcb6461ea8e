"""The workspace store: one SQLite file (WAL) that workers write and kernels read.

Everything a user sees comes from here, so a kernel restart loses nothing. Metrics are
kept as columnar chunks (one row per metric key per flush, each column a little-endian
numpy blob): a row per point made a 1M-point series take ~1.5 s to read here, chunks
take milliseconds, and a monitor's "what is new since chunk N" stays one indexed query.

Writers take ``BEGIN IMMEDIATE`` (the write lock up front, so two writers queue on the
busy timeout instead of failing a lock upgrade); readers never block in WAL mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .procs import process_alive

SCHEMA_VERSION = 5
BUSY_TIMEOUT_MS = 60_000
ACTIVE = ("queued", "running")
TERMINAL = ("succeeded", "failed", "stopped", "lost")
STATUSES = ACTIVE + TERMINAL

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    experiment TEXT NOT NULL DEFAULT 'default',
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    ended REAL,
    heartbeat REAL,
    pid INTEGER,
    pid_started REAL,
    host TEXT,
    launcher TEXT,
    accelerator TEXT,
    devices TEXT,
    precision TEXT,
    strategy TEXT,
    hparams TEXT NOT NULL DEFAULT '{}',
    trainer_args TEXT NOT NULL DEFAULT '{}',
    model_class TEXT,
    error TEXT,
    best_checkpoint TEXT,
    last_checkpoint TEXT,
    run_dir TEXT,
    notebook TEXT,
    cwd TEXT,
    epoch INTEGER,
    step INTEGER,
    total_steps INTEGER,
    eta_s REAL,
    cpu_pct REAL,
    rss_mb REAL,
    gpu_mem_mb REAL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    source TEXT NOT NULL DEFAULT 'toolkit',
    source_key TEXT UNIQUE,
    log_every_n_steps INTEGER,
    log_every_chosen INTEGER NOT NULL DEFAULT 0,
    updated REAL,
    total_epochs INTEGER,
    steps_per_s REAL,
    samples_per_s REAL,
    error_info TEXT,
    notices TEXT,
    cluster TEXT,
    samples TEXT
);
CREATE INDEX IF NOT EXISTS runs_name ON runs(name, created);
CREATE INDEX IF NOT EXISTS runs_experiment ON runs(experiment, created);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created, id);

CREATE TABLE IF NOT EXISTS metric_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    n INTEGER NOT NULL,
    steps BLOB NOT NULL,
    epochs BLOB NOT NULL,
    times BLOB NOT NULL,
    vals BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_chunks_run_key ON metric_chunks(run_id, key, id);
CREATE INDEX IF NOT EXISTS metric_chunks_run ON metric_chunks(run_id, id);

CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    engine TEXT,
    format TEXT,
    status TEXT NOT NULL,
    url TEXT,
    host TEXT,
    port INTEGER,
    pid INTEGER,
    pid_started REAL,
    created REAL NOT NULL,
    ended REAL,
    path TEXT,
    log_path TEXT,
    run_id TEXT,
    error TEXT,
    info TEXT NOT NULL DEFAULT '{}'
);
"""

_V3_COLUMNS = (
    ("total_epochs", "INTEGER"),
    ("steps_per_s", "REAL"),
    ("samples_per_s", "REAL"),
    ("error_info", "TEXT"),
    ("notices", "TEXT"),
)
_JSON_COLUMNS = {
    "hparams",
    "trainer_args",
    "devices",
    "info",
    "error_info",
    "notices",
    "cluster",
    "samples",
}


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``: what the store knows of a run at the moment it was read.

    Records are values: read a fresh one to see changes (``Run`` does so on every access).
    """

    id: str
    name: str
    experiment: str
    status: str
    created: float
    started: float | None = None
    ended: float | None = None
    heartbeat: float | None = None
    pid: int | None = None
    pid_started: float | None = None
    host: str | None = None
    launcher: str | None = None
    accelerator: str | None = None
    devices: Any = None
    precision: str | None = None
    strategy: str | None = None
    hparams: dict[str, Any] | None = None
    trainer_args: dict[str, Any] | None = None
    model_class: str | None = None
    error: str | None = None
    best_checkpoint: str | None = None
    last_checkpoint: str | None = None
    run_dir: str | None = None
    notebook: str | None = None
    cwd: str | None = None
    epoch: int | None = None
    step: int | None = None
    total_steps: int | None = None
    eta_s: float | None = None
    cpu_pct: float | None = None
    rss_mb: float | None = None
    gpu_mem_mb: float | None = None
    stop_requested: int = 0
    source: str = "toolkit"
    source_key: str | None = None
    log_every_n_steps: int | None = None
    log_every_chosen: int = 0
    updated: float | None = None
    total_epochs: int | None = None
    steps_per_s: float | None = None
    samples_per_s: float | None = None
    error_info: dict[str, Any] | None = None
    notices: list[dict[str, Any]] | None = None
    #: a cluster run's addresses, job and channel (:mod:`jupyter_ext.cluster`); None: local
    cluster: dict[str, Any] | None = None
    samples: list[dict[str, Any]] | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DeploymentRecord:
    """One row of ``deployments``."""

    name: str
    target: str
    status: str
    created: float
    engine: str | None = None
    format: str | None = None
    url: str | None = None
    host: str | None = None
    port: int | None = None
    pid: int | None = None
    pid_started: float | None = None
    ended: float | None = None
    path: str | None = None
    log_path: str | None = None
    run_id: str | None = None
    error: str | None = None
    info: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


R = TypeVar("R", RunRecord, DeploymentRecord)
RUN_COLUMNS = frozenset(f.name for f in fields(RunRecord))
DEPLOYMENT_COLUMNS = frozenset(f.name for f in fields(DeploymentRecord))


class StoreError(RuntimeError):
    """The store refused an operation (unknown run, schema too new, ...)."""


@dataclass
class Series:
    """Columns of one metric key: numpy arrays of equal length."""

    step: np.ndarray
    epoch: np.ndarray
    time: np.ndarray
    value: np.ndarray

    def __len__(self) -> int:
        return len(self.value)

    @classmethod
    def empty(cls) -> Series:
        return cls(
            np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.float64)
        )

    @classmethod
    def concat(cls, parts: Sequence[Series]) -> Series:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("step", "epoch", "time", "value")
_DTYPES = {"step": "<i8", "epoch": "<i8", "time": "<f8", "value": "<f8"}


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # base32 without i, l, o, u: easy to read


def new_id(when: float | None = None) -> str:
    """A unique, time-ordered id like ``20261123-142501-482-k7q2m9xa``.

    Local date and time to the millisecond (so ids sort by creation and say when), then
    40 random bits: two ids made in the same millisecond collide once in ~10^12 pairs,
    so any rate of creation (imports of thousands of logs, sweeps, many kernels) is safe.
    Used for runs, deployment artifacts and staging directories.

    Example::

        >>> len(new_id())
        28
    """
    t = time.time() if when is None else when
    bits = secrets.randbits(40)
    rand = "".join(_CROCKFORD[(bits >> s) & 31] for s in range(35, -1, -5))
    ms = int(t * 1000) % 1000
    return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(t))}-{ms:03d}-{rand}"


class Store:
    """A connection to the workspace store at ``path`` (created with its schema if new).

    Safe to share between threads of one process; open one per process.

    Example::

        >>> store = Store("/tmp/ws/store.sqlite")  # doctest: +SKIP
        >>> store.list_runs(status="running")  # doctest: +SKIP
        []
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- plumbing -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def _migrate(self) -> None:
        with self._write() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this toolkit's "
                    f"{SCHEMA_VERSION}: upgrade jupyter-ext"
                )
            if version < SCHEMA_VERSION:
                # executescript() would commit the open transaction, so one by one.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    c.execute(statement)
                if version == 1:
                    # v2: the logging interval a run used and who chose it; when a row last
                    # changed (so a poller reads only what changed since its last look)
                    c.execute("ALTER TABLE runs ADD COLUMN log_every_n_steps INTEGER")
                    c.execute(
                        "ALTER TABLE runs ADD COLUMN log_every_chosen INTEGER NOT NULL DEFAULT 0"
                    )
                    c.execute("ALTER TABLE runs ADD COLUMN updated REAL")
                    c.execute("UPDATE runs SET updated = COALESCE(ended, heartbeat, created)")
                if 1 <= version <= 2:
                    # v3: what the monitor shows beyond status: the run's length in epochs,
                    # its throughput, a failure's structured traceback and Lightning's
                    # warnings as notices (older rows keep NULL: the views fall back)
                    for column, kind in _V3_COLUMNS:
                        c.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
                if 1 <= version <= 3:
                    # v4: where a cluster run lives (its cluster's addresses, the job and
                    # the channel the workspace's sync drains); NULL for local runs
                    c.execute("ALTER TABLE runs ADD COLUMN cluster TEXT")
                if 1 <= version <= 4:
                    # v5: a fine-tune's sample generations at its validations (JSON:
                    # [{"step", "epoch", "samples": [{"prompt", "output"}]}], newest last)
                    c.execute("ALTER TABLE runs ADD COLUMN samples TEXT")
                c.execute("CREATE INDEX IF NOT EXISTS runs_updated ON runs(updated)")
                c.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @staticmethod
    def _decode(cls: type[R], row: sqlite3.Row | None) -> R | None:
        if row is None:
            return None
        out = dict(row)
        for col in _JSON_COLUMNS & out.keys():
            if out[col] is not None:
                out[col] = json.loads(out[col])
        return cls(**out)

    @staticmethod
    def _encode(table: str, allowed: frozenset[str], values: dict[str, Any]) -> dict[str, Any]:
        """Check column names against the record's fields (nothing else reaches the SQL
        text) and JSON-encode the JSON columns."""
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise StoreError(
                f"unknown {table} column(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(allowed))}"
            )
        return {
            k: (json.dumps(v, default=str) if k in _JSON_COLUMNS and v is not None else v)
            for k, v in values.items()
        }

    # -- runs ---------------------------------------------------------------------------
    def create_run(self, **values: Any) -> RunRecord:
        """Insert a run (status ``queued`` unless given) and return it."""
        values = {"status": "queued", "created": time.time(), **values}
        values.setdefault("host", socket.gethostname())
        values.setdefault("updated", values["created"])
        for attempt in range(5):
            row = {"id": new_id(values["created"]), **values}
            row.setdefault("name", row["id"])
            enc = self._encode("runs", RUN_COLUMNS, row)
            cols = ", ".join(enc)
            marks = ", ".join("?" * len(enc))
            try:
                with self._write() as c:
                    c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(enc.values()))
            except sqlite3.IntegrityError:
                # An id taken (a 1 in 10^12 event) or a duplicate source_key: tell them apart.
                if "source_key" in row and self.run_by_source_key(row["source_key"]):
                    raise
                if attempt == 4 or "id" in values:
                    raise
                continue
            return self.get_run(row["id"])  # type: ignore[return-value]
        raise AssertionError("unreachable")

    def update_run(self, run_id: str, *, only_if_status: Sequence[str] = (), **values: Any) -> bool:
        """Update columns of a run; with ``only_if_status``, only while its status is one of
        those (so a late writer never overwrites a final state). True if a row changed."""
        if not values:
            return False
        values.setdefault("updated", time.time())
        enc = self._encode("runs", RUN_COLUMNS, values)
        sets = ", ".join(f"{k} = ?" for k in enc)
        sql = f"UPDATE runs SET {sets} WHERE id = ?"
        params: list[Any] = [*enc.values(), run_id]
        if only_if_status:
            sql += f" AND status IN ({', '.join('?' * len(only_if_status))})"
            params += list(only_if_status)
        with self._write() as c:
            return c.execute(sql, params).rowcount > 0

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._read("SELECT * FROM runs WHERE id = ?", [run_id])
        return self._decode(RunRecord, rows[0]) if rows else None

    def runs_named(self, name: str) -> list[RunRecord]:
        """Runs with this name, newest first."""
        rows = self._read("SELECT * FROM runs WHERE name = ? ORDER BY created DESC", [name])
        return [self._decode(RunRecord, r) for r in rows]  # type: ignore[misc]

    def run_by_source_key(self, key: str) -> RunRecord | None:
        rows = self._read("SELECT * FROM runs WHERE source_key = ?", [key])
        return self._decode(RunRecord, rows[0]) if rows else None

    def list_runs(
        self,
        experiment: str | None = None,
        status: str | Sequence[str] | None = None,
        *,
        since: float | None = None,
        before: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[RunRecord]:
        """Runs, oldest first (``newest_first``: newest first), optionally filtered by
        experiment and status; ``since``: only runs changed after that Unix time;
        ``before``: only runs created before the run with that id (the next page);
        ``limit``: at most that many.

        Example::

            >>> store.list_runs(status="running", newest_first=True, limit=50)  # doctest: +SKIP
        """
        sql, params = "SELECT * FROM runs WHERE 1=1", []
        if experiment is not None:
            sql += " AND experiment = ?"
            params.append(experiment)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            sql += f" AND status IN ({', '.join('?' * len(statuses))})"
            params += statuses
        if since is not None:
            sql += " AND updated > ?"
            params.append(since)
        if before is not None:
            sql += " AND (created, id) < (SELECT created, id FROM runs WHERE id = ?)"
            params.append(before)
        order = "DESC" if newest_first else "ASC"
        sql += f" ORDER BY created {order}, id {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [self._decode(RunRecord, r) for r in self._read(sql, params)]  # type: ignore[misc]

    def run_ids(self) -> list[str]:
        return [r[0] for r in self._read("SELECT id FROM runs ORDER BY id")]

    def run_names(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT name FROM runs ORDER BY name")]

    def experiments(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT experiment FROM runs ORDER BY 1")]

    def delete_run(self, run_id: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM runs WHERE id = ?", [run_id])

    def reap_lost(self, lost_after_s: float, runs: Sequence[RunRecord] | None = None) -> list[str]:
        """Mark active runs whose worker is gone as ``lost``; return their ids.

        This is the one place where reading the runs can write: ``Run``, ``runs()`` and the
        views call it before they show a status, so a worker that died without a word is
        not shown as running forever.

        On this host a worker is gone when its pid is dead: that is definitive, while a
        live worker starved of CPU (importing torch on a loaded machine) may miss
        heartbeats. A worker elsewhere (or not yet given a pid) is gone when its heartbeat
        is older than ``lost_after_s``. The update is conditional, so it never overrides a
        worker's own final status.
        """
        host = socket.gethostname()
        now = time.time()
        candidates = runs if runs is not None else self.list_runs(status=ACTIVE)
        lost = []
        for r in candidates:
            if r.status not in ACTIVE or r.cluster:
                continue  # a cluster run's liveness is its Ray job's: the cluster sync's call
            local = r.host == host and bool(r.pid)
            dead_pid = local and not process_alive(r.pid, r.pid_started)
            silent = now - (r.heartbeat or r.created)
            stale = not local and silent > lost_after_s
            if dead_pid or stale:
                why = (
                    "its worker process ended without a word"
                    if dead_pid
                    else f"no heartbeat for {silent:.0f} s"
                )
                if self.update_run(
                    r.id,
                    only_if_status=ACTIVE,
                    status="lost",
                    ended=now,
                    error=f"Run lost: {why} (killed, out of memory, or machine gone).",
                ):
                    lost.append(r.id)
        return lost

    # -- metrics ------------------------------------------------------------------------
    def add_metrics(self, run_id: str, rows: Iterable[tuple[str, int, int, float, float]]) -> int:
        """Append ``(key, step, epoch, time, value)`` rows; one chunk per key. Returns count."""
        by_key: dict[str, list[tuple[int, int, float, float]]] = {}
        for key, step, epoch, t, value in rows:
            by_key.setdefault(key, []).append((step, epoch, t, value))
        if not by_key:
            return 0
        records = []
        for key, pts in by_key.items():
            cols = list(zip(*pts, strict=True))
            blobs = [
                np.asarray(col, dtype=_DTYPES[f]).tobytes()
                for f, col in zip(_FIELDS, cols, strict=True)
            ]
            records.append((run_id, key, len(pts), *blobs))
        with self._write() as c:
            c.executemany(
                "INSERT INTO metric_chunks (run_id, key, n, steps, epochs, times, vals) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                records,
            )
        return sum(r[2] for r in records)

    def add_series(self, run_id: str, key: str, series: Series, chunk: int = 50_000) -> None:
        """Append a whole series at once (imports), in chunks of ``chunk`` points."""
        with self._write() as c:
            for i in range(0, len(series), chunk):
                part = [getattr(series, f)[i : i + chunk] for f in _FIELDS]
                blobs = [
                    np.asarray(p, dtype=_DTYPES[f]).tobytes()
                    for f, p in zip(_FIELDS, part, strict=True)
                ]
                c.execute(
                    "INSERT INTO metric_chunks (run_id, key, n, steps, epochs, times, vals) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, key, len(part[0]), *blobs),
                )

    def metric_keys(self, run_id: str) -> list[str]:
        rows = self._read(
            "SELECT DISTINCT key FROM metric_chunks WHERE run_id = ? ORDER BY key", [run_id]
        )
        return [r[0] for r in rows]

    def read_metrics(
        self, run_id: str, keys: Sequence[str] | None = None, after: int = 0
    ) -> tuple[dict[str, Series], int]:
        """Metric series of a run, only chunks newer than chunk id ``after``.

        Returns ``({key: Series}, last_chunk_id)``; pass that id back as ``after`` to get
        only what is new (what a live chart polls).
        """
        sql = (
            "SELECT id, key, steps, epochs, times, vals FROM metric_chunks"
            " WHERE run_id = ? AND id > ?"
        )
        params: list[Any] = [run_id, after]
        if keys is not None:
            if not keys:
                return {}, after
            sql += f" AND key IN ({', '.join('?' * len(keys))})"
            params += list(keys)
        sql += " ORDER BY id"
        rows = self._read(sql, params)
        parts: dict[str, list[sqlite3.Row]] = {}
        last = after
        for r in rows:
            last = max(last, r[0])
            parts.setdefault(r[1], []).append(r)
        # Join each column's blobs, then one frombuffer: a live run's 1M points come in
        # ~10k small chunks, and a Series per chunk made this 2.5x slower.
        return {
            k: Series(
                *(
                    np.frombuffer(b"".join(r[i + 2] for r in rs), dtype=_DTYPES[f])
                    for i, f in enumerate(_FIELDS)
                )
            )
            for k, rs in parts.items()
        }, last

    def last_metric_time(self, run_id: str) -> float | None:
        """Wall time (Unix s) of the newest metric point of a run, None without metrics."""
        rows = self._read(
            "SELECT times FROM metric_chunks WHERE run_id = ? ORDER BY id DESC LIMIT 1", [run_id]
        )
        return float(np.frombuffer(rows[0][0], dtype="<f8").max()) if rows else None

    def last_metrics(self, run_id: str) -> dict[str, float]:
        """The latest value of every metric key of a run."""
        rows = self._read(
            "SELECT key, vals FROM metric_chunks WHERE id IN "
            "(SELECT MAX(id) FROM metric_chunks WHERE run_id = ? GROUP BY key) ORDER BY key",
            [run_id],
        )
        return {r[0]: float(np.frombuffer(r[1], dtype="<f8")[-1]) for r in rows}

    # -- deployments --------------------------------------------------------------------
    def upsert_deployment(self, name: str, **values: Any) -> DeploymentRecord:
        """Insert or replace the deployment called ``name``."""
        values = {"name": name, "created": time.time(), **values}
        enc = self._encode("deployments", DEPLOYMENT_COLUMNS, values)
        cols = ", ".join(enc)
        marks = ", ".join("?" * len(enc))
        with self._write() as c:
            c.execute(
                f"INSERT OR REPLACE INTO deployments ({cols}) VALUES ({marks})", tuple(enc.values())
            )
        return self.get_deployment(name)  # type: ignore[return-value]

    def update_deployment(
        self, name: str, *, only_if_status: Sequence[str] = (), **values: Any
    ) -> bool:
        """Update columns of a deployment (with ``only_if_status``: only in those states)."""
        if not values:
            return False
        enc = self._encode("deployments", DEPLOYMENT_COLUMNS, values)
        sets = ", ".join(f"{k} = ?" for k in enc)
        sql = f"UPDATE deployments SET {sets} WHERE name = ?"
        params: list[Any] = [*enc.values(), name]
        if only_if_status:
            sql += f" AND status IN ({', '.join('?' * len(only_if_status))})"
            params += list(only_if_status)
        with self._write() as c:
            return c.execute(sql, params).rowcount > 0

    def get_deployment(self, name: str) -> DeploymentRecord | None:
        rows = self._read("SELECT * FROM deployments WHERE name = ?", [name])
        return self._decode(DeploymentRecord, rows[0]) if rows else None

    def list_deployments(self) -> list[DeploymentRecord]:
        rows = self._read("SELECT * FROM deployments ORDER BY created")
        return [self._decode(DeploymentRecord, r) for r in rows]  # type: ignore[misc]

    def delete_deployment(self, name: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM deployments WHERE name = ?", [name])


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(home: str | os.PathLike[str] | None = None) -> Store:
    """The store of a workspace (default: the configured one), shared within this process.

    Example::

        >>> from jupyter_ext.store import open_store
        >>> store = open_store()  # doctest: +SKIP
    """
    if home is None:
        from .config import get_config

        home = get_config().home_path
    path = str(Path(home).expanduser().resolve() / "store.sqlite")
    with _stores_lock:
        store = _stores.get(path)
        if store is None or os.getpid() != getattr(store, "_pid", os.getpid()):
            store = Store(path)
            store._pid = os.getpid()  # type: ignore[attr-defined]
            _stores[path] = store
        return store
