"""Dynamic batching: concurrent requests stacked into one forward pass and split back.

The batcher runs in a real event loop with a real model (a torch MLP) in its worker thread;
a deployment with ``max_batch_size`` is then checked over HTTP under concurrent clients.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import numpy as np
import psutil
import pytest
import torch
from torch import nn

import jupyter_ext
from jupyter_ext.deployment.batching import Batcher


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


class Recorder:
    """The model, recording the batch sizes it was called with; rows holding 13.0 fail."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.sizes: list[int] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.sizes.append(len(x))
        if (x == 13.0).any():
            raise ValueError("13 is unlucky")
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()


def _eager(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def _inputs(sizes: list[int]) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal((n, 5)).astype(np.float32) for n in sizes]


@pytest.mark.parametrize("in_thread", [False, True])
def test_concurrent_requests_share_forward_passes_and_get_their_own_rows(in_thread):
    model = _mlp()
    rec = Recorder(model)
    batcher = Batcher(rec, max_batch_size=16, timeout_ms=0, in_thread=in_thread)
    xs = _inputs([1, 3, 2, 5, 1, 4, 1, 1, 2, 6])

    async def main() -> list[np.ndarray]:
        # requests arriving in one turn of the event loop, as a burst of clients does
        return await asyncio.gather(*(batcher(x) for x in xs))

    outs = asyncio.run(main())
    for x, y in zip(xs, outs, strict=True):
        np.testing.assert_allclose(y, _eager(model, x), rtol=1e-5, atol=1e-6)
    assert rec.sizes == [16, 10]  # in arrival order, as many rows as fit
    assert batcher.requests == len(xs) and batcher.batches == 2
    batcher.close()


def test_batches_never_exceed_max_rows_and_a_larger_request_runs_alone():
    rec = Recorder(_mlp())
    batcher = Batcher(rec, max_batch_size=4, timeout_ms=0)
    xs = _inputs([3, 3, 1, 9, 2, 2])

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher(x) for x in xs))

    outs = asyncio.run(main())
    assert [len(y) for y in outs] == [len(x) for x in xs]
    assert rec.sizes == [3, 4, 9, 4]  # the 9 is bigger than a batch: served whole, alone
    batcher.close()


def test_a_failing_request_fails_alone_and_the_others_are_answered():
    model = _mlp()
    rec = Recorder(model)
    batcher = Batcher(rec, max_batch_size=32, timeout_ms=0)
    xs = _inputs([2, 2, 2, 2])
    xs[2][1, 3] = 13.0  # this request's second row makes the model raise

    async def main() -> list[object]:
        return await asyncio.gather(*(batcher(x) for x in xs), return_exceptions=True)

    outs = asyncio.run(main())
    assert isinstance(outs[2], ValueError) and "unlucky" in str(outs[2])
    assert rec.sizes == [8, 2, 2, 2, 2]  # the stacked batch failed; each then ran alone
    for i in (0, 1, 3):
        np.testing.assert_allclose(outs[i], _eager(model, xs[i]), rtol=1e-5, atol=1e-6)
    batcher.close()


def test_a_batch_timeout_waits_for_more_requests():
    rec = Recorder(_mlp())
    batcher = Batcher(rec, max_batch_size=8, timeout_ms=200)
    xs = _inputs([1, 1, 1])

    async def main() -> None:
        futures = []
        for x in xs:  # arriving one after the other, well within the 200 ms window
            futures.append(asyncio.ensure_future(batcher(x)))
            await asyncio.sleep(0.005)  # spacing between arrivals (what is tested)
        await asyncio.gather(*futures)

    asyncio.run(main())
    assert rec.sizes == [3]  # one forward pass for the three
    batcher.close()


def test_a_model_with_the_wrong_output_rows_is_an_error_not_a_wrong_answer():
    batcher = Batcher(lambda x: x[:1], max_batch_size=8, timeout_ms=0)
    with pytest.raises(ValueError, match="batching needs row i of the output for row i"):
        asyncio.run(batcher(np.zeros((3, 5), np.float32)))
    batcher.close()


def test_a_batched_deployment_answers_concurrent_clients_with_their_own_rows(workspace):
    model = _mlp()
    dep = jupyter_ext.deploy(
        model, name="batched", example=torch.randn(4, 5), format="onnx",
        max_batch_size=16, batch_timeout_ms=2, verbose=False,
    )  # fmt: skip
    try:
        cmdline = psutil.Process(dep.pid).cmdline()
        assert cmdline[cmdline.index("--max-batch-size") + 1] == "16"
        xs = _inputs([1, 2, 3, 1, 4, 1, 2, 1] * 4)
        answers: dict[int, np.ndarray] = {}
        errors: list[str] = []

        def client(ids: list[int]) -> None:
            with httpx.Client(trust_env=False, timeout=30) as c:
                for i in ids:
                    r = c.post(f"{dep.url}/predict", json={"inputs": xs[i].tolist()})
                    if r.status_code != 200:
                        errors.append(r.text)
                    else:
                        answers[i] = np.array(r.json()["outputs"], dtype=np.float32)

        threads = [
            threading.Thread(target=client, args=(list(range(k, len(xs), 8)),)) for k in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for i, x in enumerate(xs):
            np.testing.assert_allclose(answers[i], _eager(model, x), rtol=1e-4, atol=1e-5)
    finally:
        dep.stop()
