"""Baseline (c): a bare LitServe server, as its documentation writes one.

    python -m benchmarks._bare_litserve PORT STATE_DICT [MAX_BATCH_SIZE]

With ``MAX_BATCH_SIZE`` > 1, LitServe's own dynamic batching (``batch_timeout=0``: only
what is already queued) and its default ``batch``/``unbatch`` (``torch.stack``, ``list``).

The LitAPI lives in this module, not in ``__main__``: LitServe's spawned workers import it
by module path. Started as a subprocess by ``benchmarks.bench_serving``.
"""

from __future__ import annotations

import sys

import litserve as ls
import torch

from ._bare_fastapi import load_mlp


class BareLitAPI(ls.LitAPI):
    def __init__(self, path: str, max_batch_size: int = 1) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=0.0)
        self.path = path

    def setup(self, device):
        self.model = load_mlp(self.path)

    def decode_request(self, request):
        return torch.tensor(request["inputs"], dtype=torch.float32)

    def predict(self, x):
        with torch.inference_mode():
            return self.model(x)

    def encode_response(self, output):
        return {"outputs": output.tolist()}


if __name__ == "__main__":
    port, path = int(sys.argv[1]), sys.argv[2]
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    server = ls.LitServer(BareLitAPI(path, batch), accelerator="cpu")
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)
