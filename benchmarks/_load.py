"""A lean HTTP load generator for ``benchmarks.bench_serving``: the client must not be the
bottleneck, nor most of the latency it measures.

Python's ``http.client`` costs 100-200 us per request (header objects, a buffered reader,
email-style header parsing), about as much as a whole small-model request costs the
server; and client threads in the server's machine fight each other for the GIL. Here
instead:

* each connection is a keep-alive raw socket (``TCP_NODELAY``); a request is bytes encoded
  once (``POST /predict``, ``Content-Length``, a JSON body), sent with one ``sendall``, and
  its response is read by its ``Content-Length`` header (chunked responses are refused: no
  server under test sends them);
* concurrent clients are spread over a few client processes (:class:`LoadPool`: started
  once, reused by every measurement), each driving its connections from one ``selectors``
  loop, closed-loop (a connection sends its next request when its answer is in);
* every answer is checked, after the clock stops so that the check costs no throughput:
  status 200, a JSON body whose ``outputs`` (or mlflow's ``predictions``) has the row
  count sent and values within ``TOLERANCE`` of the expected ones.

Stdlib only, so a spawned client process starts in tens of milliseconds. Requests go to
127.0.0.1 only; every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
TIMEOUT = 30.0  # seconds without an answer before a measurement fails
TOLERANCE = 1e-3  # served vs expected values (the deploy parity check is tighter)
_RECV = 65536


def encode_post(port: int, body: bytes, path: str = "/predict") -> bytes:
    """One HTTP/1.1 keep-alive POST of a JSON ``body``, ready to send.

    Example::

        >>> encode_post(8080, b"{}").split(b"\\r\\n")[0]
        b'POST /predict HTTP/1.1'
    """
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def _take_response(buf: bytearray) -> tuple[int, bytes] | None:
    """``(status, body)`` of the first complete response in ``buf`` (removed from it), or
    None while it is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError(f"a response without Content-Length (chunked?): {head[:300]!r}")
    stop = head.find(b"\r\n", at + 17)
    length = int(head[at + 17 : stop if stop >= 0 else None])
    if len(buf) < end + 4 + length:
        return None
    status = int(head[9:12])
    body = bytes(buf[end + 4 : end + 4 + length])
    del buf[: end + 4 + length]
    return status, body


class _Conn:
    """One keep-alive connection and what it has received but not yet parsed."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.sent_at = 0.0
        self.left = 0
        self.index = 0

    def read(self) -> tuple[int, bytes] | None:
        """Receive once; the response if that completed one."""
        chunk = self.sock.recv(_RECV)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk
        return _take_response(self.buf)

    def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request`` and wait for its response (blocking)."""
        self.sock.sendall(request)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            got = self.read()
            if got is not None:
                return got
        raise TimeoutError(f"no complete response in {TIMEOUT} s")

    def close(self) -> None:
        self.sock.close()


def check(status: int, body: bytes, expected: list[float] | None) -> None:
    """Raise unless the answer is a 200 with one output row close to ``expected``."""
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    doc = json.loads(body)
    rows = doc.get("outputs", doc.get("predictions")) if isinstance(doc, dict) else None
    if not isinstance(rows, list) or len(rows) != 1:
        raise RuntimeError(f"expected one output row, got {body[:300]!r}")
    if expected is not None:
        row = rows[0]
        if len(row) != len(expected) or any(
            abs(a - b) > TOLERANCE for a, b in zip(row, expected, strict=True)
        ):
            raise RuntimeError(f"wrong answer: {row} (expected {expected})")


@dataclass
class Job:
    """What one client process runs: ``conns`` connections, ``per_conn`` requests each
    (fewer when ``max_seconds`` run out first: a slow server must not stretch the whole
    benchmark), request ``i`` of a connection being ``requests[(offset + i) % len(requests)]``."""

    port: int
    requests: list[bytes]
    expected: list[list[float]]
    conns: int
    per_conn: int
    offset: int = 0
    max_seconds: float = 60.0


@dataclass
class Result:
    """Per-request latencies (seconds) and the span in which the requests ran."""

    latencies: list[float] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0


def _run_one(conn: _Conn, job: Job, answers: list[tuple[int, bytes, int]]) -> list[float]:
    """One connection, blocking: the least client work per request."""
    latencies = []
    n = len(job.requests)
    stop_at = time.perf_counter() + job.max_seconds
    for i in range(job.per_conn):
        if i and time.perf_counter() > stop_at:
            break
        k = (job.offset + i) % n
        t0 = time.perf_counter()
        status, body = conn.roundtrip(job.requests[k])
        latencies.append(time.perf_counter() - t0)
        answers.append((status, body, k))
    return latencies


def _run_many(conns: list[_Conn], job: Job, answers: list[tuple[int, bytes, int]]) -> list[float]:
    """Several connections from one ``selectors`` loop, each sending its next request as
    soon as its answer is in."""
    latencies = []
    n = len(job.requests)
    stop_at = time.perf_counter() + job.max_seconds
    sel = selectors.DefaultSelector()
    for j, c in enumerate(conns):
        c.left, c.index = job.per_conn, job.offset + j * job.per_conn
        sel.register(c.sock, selectors.EVENT_READ, c)
        c.sent_at = time.perf_counter()
        c.sock.sendall(job.requests[c.index % n])
    active = len(conns)
    deadline = time.monotonic() + TIMEOUT + job.per_conn * len(conns) * 0.1
    try:
        while active and time.monotonic() < deadline:
            events = sel.select(TIMEOUT)
            if not events:
                raise TimeoutError(f"no response in {TIMEOUT} s ({active} connections waiting)")
            for key, _ in events:
                c = key.data
                got = c.read()
                if got is None:
                    continue
                now = time.perf_counter()
                latencies.append(now - c.sent_at)
                answers.append((got[0], got[1], c.index % n))
                c.left -= 1
                if c.left and now < stop_at:
                    c.index += 1
                    c.sent_at = time.perf_counter()
                    c.sock.sendall(job.requests[c.index % n])
                else:
                    sel.unregister(c.sock)
                    active -= 1
        if active:
            raise TimeoutError(f"{active} connections unfinished at the deadline")
    finally:
        sel.close()
    return latencies


def run_job(job: Job, ready: Any = None) -> Result:
    """Connect, warm each connection with one checked request, call ``ready()`` (which
    returns when every client process may start), then run and check ``job``."""
    conns = [_Conn(job.port) for _ in range(job.conns)]
    try:
        for j, c in enumerate(conns):
            k = (job.offset + j) % len(job.requests)
            check(*c.roundtrip(job.requests[k]), job.expected[k])
        if ready is not None:
            ready()
        answers: list[tuple[int, bytes, int]] = []
        start = time.perf_counter()
        if len(conns) == 1:
            latencies = _run_one(conns[0], job, answers)
        else:
            latencies = _run_many(conns, job, answers)
        end = time.perf_counter()
    finally:
        for c in conns:
            c.close()
    for status, body, k in answers:  # after the clock: checking costs no throughput
        check(status, body, job.expected[k])
    return Result(latencies, start, end)


def _client_process(pipe: Any) -> None:
    """A client process: run the jobs the pipe brings until it brings None."""
    while True:
        job = pipe.recv()
        if job is None:
            return

        def ready() -> None:
            pipe.send("ready")
            if pipe.recv() != "go":
                raise RuntimeError("client process: expected 'go'")

        try:
            pipe.send(run_job(job, ready))
        except Exception as exc:  # reported to the parent, which raises it
            pipe.send(f"{type(exc).__name__}: {exc}")


class LoadPool:
    """Client processes, started once and reused for every measurement.

    Each is ``python -m benchmarks._load FD``, talking pickles over a socket pair: not
    multiprocessing's spawn, which would import the parent's main module (torch, numpy)
    into every client again.

    Example::

        >>> with LoadPool(2) as pool:  # doctest: +SKIP
        ...     latencies, req_s = pool.run(port, requests, expected, clients=16, per_client=100)
    """

    def __init__(self, processes: int = 2) -> None:
        root = Path(__file__).resolve().parents[1]
        self.pipes: list[Connection] = []
        self.procs: list[subprocess.Popen] = []
        for _ in range(processes):
            ours, theirs = socket.socketpair()
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks._load", str(theirs.fileno())],
                cwd=root,
                pass_fds=[theirs.fileno()],
            )
            theirs.close()
            self.pipes.append(Connection(ours.detach()))
            self.procs.append(proc)

    def __enter__(self) -> LoadPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _recv(self, pipe: Connection) -> Any:
        if not pipe.poll(TIMEOUT * 4):
            raise TimeoutError("a client process did not answer")
        got = pipe.recv()
        if isinstance(got, str) and got != "ready":
            raise RuntimeError(f"client process: {got}")
        return got

    def run(
        self,
        port: int,
        requests: list[bytes],
        expected: list[list[float]],
        clients: int,
        per_client: int,
        offset: int = 0,
        max_seconds: float = 60.0,
    ) -> tuple[list[float], float]:
        """``(latencies, req/s)`` of ``clients`` concurrent connections sending
        ``per_client`` requests each (or for ``max_seconds``): one client process for one
        connection, else the connections split evenly over the pool's processes, all
        started together."""
        procs = min(len(self.pipes), clients)
        shares = [clients // procs + (i < clients % procs) for i in range(procs)]
        pipes = self.pipes[:procs]
        first = offset
        for pipe, share in zip(pipes, shares, strict=True):
            pipe.send(Job(port, requests, expected, share, per_client, first, max_seconds))
            first += share * per_client
        for pipe in pipes:
            self._recv(pipe)  # "ready": connected and warm
        for pipe in pipes:
            pipe.send("go")
        results: list[Result] = [self._recv(pipe) for pipe in pipes]
        latencies = [x for r in results for x in r.latencies]
        # perf_counter is CLOCK_MONOTONIC on Linux: one clock for every process
        span = max(r.end for r in results) - min(r.start for r in results)
        return latencies, len(latencies) / span

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
                pipe.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.pipes, self.procs = [], []


if __name__ == "__main__":
    # this module's own copy, not __main__'s: results pickle as benchmarks._load.Result
    from benchmarks._load import _client_process as client_process

    client_process(Connection(int(sys.argv[1])))
