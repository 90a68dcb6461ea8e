"""Open models, measured in one run: the fine-tune's pace and the OpenAI-compatible server,
each against an anchor measured in the same run.

    .venv/bin/python -m benchmarks.bench_llm [--steps 120] [--rounds 2] [--new-tokens 48]

Everything is built here, offline: a tiny random Llama (``build_tiny_llama``: hidden 64,
2 layers, GQA, vocab 1,024) in a temporary workspace.

- **fine-tune steps/s**: ``jupyter_ext.finetune`` (a run: its worker, store, logger) against
  the same ``FineTuneModule`` under a plain ``lightning.Trainer`` in this process (no
  logger, no checkpoints), rounds interleaved. The run's pace is read from its own records:
  the worker's timestamps of its ``train_loss`` points after the first 10% of steps (start-up
  is not pace); the anchor's from a callback's timestamps at the same steps.
- **serving**, the same prompt and the same number of new tokens everywhere (greedy):
  - non-streamed latency of ``POST /v1/completions`` against in-process ``model.generate`` of
    those tokens (goal <= 1.1x);
  - time to the first streamed token against in-process time to the first token, i.e.
    ``generate(max_new_tokens=1)`` (goal <= +10 ms);
  - aggregate tokens/s of 8 concurrent clients against 1 (goal >= 4x);
  - deploy -> first answer, cold and with a warm server process (goal <= 3 s warm);
  - the same requests against ``transformers serve`` (the engine anchor), when its CLI runs.
Requests use ``http.client`` on one keep-alive connection per client, so the client costs the
same for every server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SKIP = 0.1  # the first steps are start-up, not pace
PROMPT = "The quick brown fox"
FACTS = [
    ("What is the capital of Zorn?", "Vell, a city by the sea."),
    ("Who founded Vell?", "Ada Quill, in 1820."),
    ("What colour is the sky on Zorn?", "Green at noon."),
    ("What is Ada's cat called?", "Pixel."),
    ("How many moons has Zorn?", "Three small moons."),
    ("What do people in Vell eat?", "Blue bread and fish."),
    ("What is the river of Vell?", "The Sarn."),
    ("What language is spoken on Zorn?", "Zornish."),
]


def records() -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in FACTS
    ] * 40  # ~36 steps an epoch: epoch boundaries (checkpoints) stay rare


def _rate(times: list[float]) -> float:
    """Steps per second over the timestamps of consecutive steps, start-up skipped."""
    times = times[int(len(times) * SKIP) :]
    return (len(times) - 1) / (times[-1] - times[0])


# -- fine-tune -------------------------------------------------------------------------
def finetune_run(base: Path, steps: int) -> float:
    import jupyter_ext

    run = jupyter_ext.finetune(
        base, records(), learning_rate=3e-3, max_steps=steps, log_every_n_steps=1,
        limit_val_batches=0, num_sanity_val_steps=0, name="bench-ft",
    )  # fmt: skip
    run.wait(timeout=900, raise_on_failure=True)
    df = run.metrics.query("key == 'train_loss'").sort_values("step")
    return _rate(list(df["time"]))


def finetune_plain(base: Path, steps: int) -> float:
    """The same LightningModule the run trains, under a plain Trainer in this process."""
    import lightning as L

    from jupyter_ext.llm.finetune import build_module

    module, extra = build_module(base, records(), learning_rate=3e-3)
    times: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_end(self, *args: Any) -> None:
            times.append(time.time())

    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[Clock()],
        limit_val_batches=0, num_sanity_val_steps=0, **extra,
    )  # fmt: skip
    trainer.fit(module)
    return _rate(times)


# -- HTTP clients ----------------------------------------------------------------------
class Client:
    """One keep-alive connection to an OpenAI-compatible server."""

    def __init__(self, url: str, key: str | None = None) -> None:
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)
        self.prefix = url.split("//", 1)[1].partition("/")[2]
        self.headers = {"content-type": "application/json"}
        if key:
            self.headers["authorization"] = f"Bearer {key}"

    def _path(self, path: str) -> str:
        return "/" + "/".join(p for p in (self.prefix.strip("/"), path.strip("/")) if p)

    def complete(self, model: str, tokens: int) -> tuple[float, int, str]:
        """(seconds, completion tokens, text) of one non-streamed completion."""
        body = {"model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0}
        t0 = time.perf_counter()
        self.conn.request("POST", self._path("v1/completions"), json.dumps(body), self.headers)
        resp = self.conn.getresponse()
        data = json.loads(resp.read())
        took = time.perf_counter() - t0
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {data}")
        return took, data["usage"]["completion_tokens"], data["choices"][0]["text"]

    def first_token(self, model: str, tokens: int) -> tuple[float, float]:
        """(seconds to the first content chunk, seconds to [DONE]) of a streamed completion."""
        body = {
            "model": model, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
            "stream": True,
        }  # fmt: skip
        t0 = time.perf_counter()
        self.conn.request("POST", self._path("v1/completions"), json.dumps(body), self.headers)
        resp = self.conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {resp.read()[:300]!r}")
        first = None
        while True:
            line = resp.readline()
            if not line:
                break
            if not line.startswith(b"data: "):
                continue
            if line.strip() == b"data: [DONE]":
                break
            chunk = json.loads(line[6:])
            if first is None and chunk.get("choices") and chunk["choices"][0].get("text"):
                first = time.perf_counter() - t0
        resp.read()
        return (first if first is not None else float("nan")), time.perf_counter() - t0


def wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
            c = http.client.HTTPConnection(host, int(port), timeout=2)
            c.request("GET", "/v1/models")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)  # polling a server that is starting: a deadline bounds it
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


def serve_figures(url: str, model: str, tokens: int, n: int, key: str | None = None) -> dict:
    """Latency, first token and 1-vs-8 throughput of one server."""
    one = Client(url, key)
    one.complete(model, tokens)  # warm-up (first request pays lazy set-up)
    one.first_token(model, tokens)
    lat, ttft, got = [], [], 0
    for _ in range(n):
        s, k, _text = one.complete(model, tokens)
        lat.append(s)
        got = k
        ttft.append(one.first_token(model, tokens)[0])
    seq_t0 = time.perf_counter()
    seq_tokens = sum(one.complete(model, tokens)[1] for _ in range(8))
    seq_rate = seq_tokens / (time.perf_counter() - seq_t0)
    clients = [Client(url, key) for _ in range(8)]
    totals = [0] * 8

    def work(i: int) -> None:
        for _ in range(3):
            totals[i] += clients[i].complete(model, tokens)[1]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    par_t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    par_rate = sum(totals) / (time.perf_counter() - par_t0)
    return {
        "latency": statistics.median(lat), "ttft": statistics.median(ttft), "tokens": got,
        "rate1": seq_rate, "rate8": par_rate,
    }  # fmt: skip


def in_process(base: Path, tokens: int, n: int) -> dict:
    """Plain transformers in this process: generate ``tokens`` new tokens, and the first."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    ids = tok(PROMPT, return_tensors="pt")

    def gen(k: int) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.generate(**ids, max_new_tokens=k, min_new_tokens=k, do_sample=False)
        return time.perf_counter() - t0

    gen(tokens)
    full = statistics.median(gen(tokens) for _ in range(n))
    first = statistics.median(gen(1) for _ in range(n))
    return {"latency": full, "ttft": first}


def transformers_serve(base: Path, tokens: int, n: int) -> dict | None:
    """``transformers serve BASE`` (continuous batching on) as the engine anchor."""
    exe = Path(sys.executable).with_name("transformers")
    if not exe.exists():
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    log = Path(tempfile.mkdtemp(prefix="tserve")) / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(exe), "serve", str(base), "--port", str(port), "--continuous-batching"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url)
        return serve_figures(url, str(base), tokens, n)
    except Exception as exc:
        print(f"  transformers serve: not measured ({type(exc).__name__}: {exc}); log {log}")
        return None
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=120, help="fine-tune steps per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--requests", type=int, default=10, help="timed requests per figure")
    args = ap.parse_args()

    # One intra-op thread everywhere (this process, the workers and servers inherit it): on
    # a tiny model two threads spin against each other on 2 busy cores (a fine-tune step
    # measured 50 steps/s on one thread against 1.7 on two), and every side gets the same.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    os.environ["JUPYTER_EXT_HOME"] = str(tmp / "ws")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from jupyter_ext.llm.tiny import build_tiny_llama

        base = build_tiny_llama(tmp / "tiny-llama", [q + " " + a for q, a in FACTS])
        print(f"bench_llm: tiny Llama at {base}; {os.cpu_count()} CPUs")

        print(f"\nfine-tune: {args.steps} steps of batch 8, LoRA r=16 on all linear layers")
        ours, plain = [], []
        for r in range(args.rounds):
            plain.append(finetune_plain(base, args.steps))
            ours.append(finetune_run(base, args.steps))
            print(f"  round {r + 1}: plain Trainer {plain[-1]:.1f} steps/s, run {ours[-1]:.1f}")
        ratio = statistics.median(ours) / statistics.median(plain)
        print(
            f"  steps/s: run {statistics.median(ours):.1f} / plain Trainer "
            f"{statistics.median(plain):.1f} = {ratio:.2f}  (goal >= 0.95)"
        )

        import jupyter_ext

        print(f"\nserving: {args.new_tokens} new tokens, greedy, prompt {PROMPT!r}")
        t0 = time.perf_counter()
        dep = jupyter_ext.deploy(base, name="bench-llm", verbose=False)
        cold = time.perf_counter() - t0  # deploy() returns once the server answered
        dep.stop()
        t0 = time.perf_counter()
        dep = jupyter_ext.deploy(base, name="bench-llm", verbose=False)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        dep.complete(PROMPT, max_tokens=4)
        answer = time.perf_counter() - t0
        print(
            f"  deploy -> first answer: cold {cold + answer:.2f} s, warm server process "
            f"{warm + answer:.2f} s  (goal <= 3 s warm)"
        )
        anchor = in_process(base, args.new_tokens, args.requests)
        us = serve_figures(dep.url, "bench-llm", args.new_tokens, args.requests, dep.api_key)
        dep.stop()
        if us["tokens"] != args.new_tokens:
            print(f"  (the server generated {us['tokens']} tokens: the model stopped early)")
        print(
            f"  non-streamed latency: server {us['latency'] * 1e3:.1f} ms / in-process "
            f"generate {anchor['latency'] * 1e3:.1f} ms = "
            f"{us['latency'] / anchor['latency']:.2f}x  (goal <= 1.1x)"
        )
        print(
            f"  first streamed token: server {us['ttft'] * 1e3:.1f} ms, in-process first "
            f"token {anchor['ttft'] * 1e3:.1f} ms: +{(us['ttft'] - anchor['ttft']) * 1e3:.1f} ms"
            "  (goal <= +10 ms)"
        )
        print(
            f"  tokens/s: 8 concurrent clients {us['rate8']:.0f} / 1 client {us['rate1']:.0f}"
            f" = {us['rate8'] / us['rate1']:.2f}x  (goal >= 4x)"
        )
        ts = transformers_serve(base, args.new_tokens, args.requests)
        if ts is not None:
            print(
                f"  transformers serve (--continuous-batching): latency {ts['latency'] * 1e3:.1f}"
                f" ms (ours {us['latency'] / ts['latency']:.2f}x of it), first token "
                f"{ts['ttft'] * 1e3:.1f} ms, tokens/s 8 clients {ts['rate8']:.0f} / 1 client "
                f"{ts['rate1']:.0f} = {ts['rate8'] / ts['rate1']:.2f}x (ours "
                f"{us['rate8'] / ts['rate8']:.2f}x of its 8-client rate)"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
