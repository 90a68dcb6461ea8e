"""vLLM as an opt-in engine for text deployments (``deploy(..., engine="vllm")``), where it
is installed on a CUDA machine.

vLLM brings its own scheduler, paged KV cache and multi-LoRA batching; this module only
adapts its async engine to what :mod:`.openai_app` calls (``encode``, ``budget``,
``generate``), so the routes, validation, errors, stop strings and streaming are the same
code as with transformers. Adapters are ``LoRARequest`` per request: vLLM batches requests
of different adapters together, so no :class:`~.engine.AdapterGate` is needed.
"""

from __future__ import annotations

import importlib.util
import itertools
import secrets
from collections.abc import AsyncIterator
from typing import Any

from .engine import Piece, TextEngine, TextSpec, _Incremental
from .schemas import GenRequest


def check_vllm(device: str) -> None:
    """Refuse ``engine="vllm"`` where it cannot run: vLLM not installed, or no CUDA device.

    Example::

        >>> check_vllm("cpu")
        Traceback (most recent call last):
        ...
        ValueError: engine='vllm' needs a CUDA device (device='cuda'); got device='cpu'
    """
    if not device.startswith("cuda"):
        raise ValueError(
            f"engine='vllm' needs a CUDA device (device='cuda'); got device={device!r}"
        )
    if importlib.util.find_spec("vllm") is None:
        raise ValueError(
            "engine='vllm' needs vLLM installed (pip install vllm) on a CUDA machine; "
            "the default engine='transformers' runs everywhere"
        )


class VllmEngine(TextEngine):
    """A text deployment's model on vLLM's async engine.

    Example::

        >>> engine = VllmEngine.load(TextSpec("qa", "merged-dir", device="cuda"))  # doctest: +SKIP
    """

    def __init__(self, llm: Any, tokenizer: Any, spec: TextSpec, context: int) -> None:
        # not TextEngine.__init__: there is no transformers model in this process
        self.llm = llm
        self.tokenizer = tokenizer
        self.names = {
            n: (None if n == spec.name and not spec.adapter else n) for n in spec.model_names()
        }
        self.context = context
        self.eos = {tokenizer.eos_token_id} - {None}
        self.device = spec.device
        self.gate = None
        self.manager = None
        ids = itertools.count(1)
        from vllm.lora.request import LoRARequest

        paths = dict(spec.adapters)
        if spec.adapter:
            paths[spec.name] = spec.adapter
        self.loras = {n: LoRARequest(n, next(ids), p) for n, p in paths.items()}

    @classmethod
    def load(cls, spec: TextSpec) -> VllmEngine:
        """Build vLLM's async engine for ``spec`` (adapters as LoRA requests).

        Example::

            >>> VllmEngine.load(TextSpec("qa", "merged", device="cuda"))  # doctest: +SKIP
        """
        from transformers import AutoConfig, AutoTokenizer
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        config = AutoConfig.from_pretrained(spec.model_dir)
        context = int(getattr(config, "max_position_embeddings", 0) or 2048)
        args = AsyncEngineArgs(
            model=spec.model_dir,
            dtype=spec.dtype or "auto",
            enable_lora=bool(spec.adapter or spec.adapters),
            max_loras=max(1, len(spec.adapters) + bool(spec.adapter)),
            max_lora_rank=64,
        )
        llm = AsyncLLMEngine.from_engine_args(args)
        return cls(llm, AutoTokenizer.from_pretrained(spec.model_dir), spec, context)

    def start(self) -> None:
        """Nothing to start: vLLM's engine runs once built."""

    def close(self) -> None:
        shutdown = getattr(self.llm, "shutdown", None)
        if callable(shutdown):
            shutdown()

    async def generate(self, req: GenRequest, ids: list[int], budget: int) -> AsyncIterator[Piece]:
        """As :meth:`TextEngine.generate`, on vLLM (its own batching across adapters).

        Example::

            >>> async for piece in engine.generate(req, ids, 16):  # doctest: +SKIP
            ...     print(piece.text, end="")
        """
        from vllm import SamplingParams

        params = SamplingParams(
            n=1, temperature=req.temperature, top_p=req.top_p, max_tokens=budget,
            seed=req.seed, skip_special_tokens=True,
        )  # fmt: skip
        rid = f"req-{secrets.token_hex(8)}"
        decoder = _Incremental(self.tokenizer, req.stop)
        stream = self.llm.generate(
            {"prompt_token_ids": ids}, params, rid, lora_request=self.loras.get(req.model)
        )
        done = False
        try:
            async for out in stream:
                tokens = list(out.outputs[0].token_ids)
                text = decoder.update(tokens, out.finished)
                if decoder.stopped or out.finished:
                    done = True
                    yield self._last(text, tokens, ids, budget, decoder.stopped)
                    return
                if text:
                    yield Piece(text)
        finally:
            if not done or decoder.stopped:
                await self.llm.abort(rid)
