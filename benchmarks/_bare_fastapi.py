"""Baseline (b): a bare FastAPI ``async def`` + uvicorn server, as a person writes it.

    python -m benchmarks._bare_fastapi PORT STATE_DICT

Eager torch, ``{"inputs": ...}`` in and ``{"outputs": ...}`` out, no validation beyond what
FastAPI does. Started as a subprocess by ``benchmarks.bench_serving``.
"""

# no `from __future__ import annotations`: FastAPI resolves `request: Request` at runtime
import sys

import torch
from fastapi import FastAPI, Request


def make_mlp() -> torch.nn.Module:
    """The benchmark model: 64 -> 256 -> 256 -> 10."""
    return torch.nn.Sequential(
        torch.nn.Linear(64, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )


def load_mlp(path: str) -> torch.nn.Module:
    model = make_mlp()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def serve(port: int, path: str) -> None:
    import uvicorn

    model = load_mlp(path)
    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"ok": True}

    @app.post("/predict")
    async def predict(request: Request):
        data = await request.json()
        with torch.inference_mode():
            y = model(torch.tensor(data["inputs"], dtype=torch.float32))
        return {"outputs": y.tolist()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    serve(int(sys.argv[1]), sys.argv[2])
