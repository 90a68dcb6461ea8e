"""Generation on transformers, for the OpenAI routes: tokens in, text pieces out.

Three lanes, all transformers' own machinery (no scheduler or KV cache of ours):

- **Greedy** requests (``temperature`` 0) go to transformers' continuous-batching manager
  (``model.init_continuous_batching()``, a paged KV cache and a background thread that
  batches every request in flight, streaming or not). It runs on CPU too (SDPA attention
  over the paged cache), so 8 concurrent clients share one forward pass per step, and a
  request's tokens do not depend on what else is in the batch: streamed, whole, alone or
  8 at once give the same text.
- **Sampled** requests without a ``seed`` (OpenAI's default, temperature 1) go to a second
  manager that samples (``do_sample=True``, its per-request temperature and top-p
  processors), batched the same way.
- **Seeded** sampled requests go to ``model.generate`` one at a time in a worker thread.
  A manager samples a whole batch from the process's one random generator, so it cannot
  honour a per-request ``seed``; ``generate`` after ``torch.manual_seed(seed)`` does, while
  the sampling manager is paused (``manager.pause()``) so nothing else draws from that
  generator meanwhile: the same seed gives the same text, also under load.

Several fine-tunes of one base are PEFT adapters loaded onto one model
(``PeftModel.load_adapter``); the model name picks the adapter. Requests are grouped by
adapter (:class:`AdapterGate`): the active adapter is switched only when nothing is in
flight, and while another adapter's request waits, no new request of the active one starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schemas import GenRequest, OpenAIError

log = logging.getLogger("jupyter_ext.serving.textgen")

SPEC_FILE = "textgen.json"
#: requests whose KV cache the CPU manager holds at once (more wait in its queue)
CPU_CONCURRENCY = 16
#: at most this many tokens of KV cache on CPU (a 7B model: ~8 GiB in float32)
CPU_CACHE_TOKENS = 32768


@dataclass
class TextSpec:
    """What a text deployment serves (``textgen.json`` in its directory): the model
    directory, an adapter for the deployment's own name, and extra adapters by name.

    Example::

        >>> TextSpec("qa", "/ws/base", adapters={"b": "/ws/b"}).model_names()
        ['qa', 'b']
    """

    name: str
    model_dir: str
    adapter: str | None = None
    adapters: dict[str, str] = field(default_factory=dict)
    engine: str = "transformers"
    device: str = "cpu"
    dtype: str | None = None
    api_key_sha256: str | None = None

    def model_names(self) -> list[str]:
        """The names ``/v1/models`` lists: the deployment's, then one per extra adapter.

        Example::

            >>> TextSpec("qa", "base").model_names()
            ['qa']
        """
        return [self.name, *self.adapters]

    def write(self, directory: Path) -> Path:
        """Write ``textgen.json`` into ``directory``; its path.

        Example::

            >>> TextSpec("qa", "base").write(tmp_path)  # doctest: +SKIP
        """
        path = Path(directory) / SPEC_FILE
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")
        return path

    @classmethod
    def read(cls, directory: Path) -> TextSpec:
        """The spec in ``directory/textgen.json``.

        Example::

            >>> TextSpec.read(Path("ws/deployments/qa-1a2b")).name  # doctest: +SKIP
            'qa'
        """
        return cls(**json.loads((Path(directory) / SPEC_FILE).read_text()))


@dataclass
class Piece:
    """One step of a generation: new ``text``; the last piece has ``finish_reason`` and
    the token counts."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class AdapterGate:
    """Lets requests in only while the adapter they need is active, switching adapters
    when nothing is in flight (so a batch never mixes adapters).

    Example::

        >>> gate = AdapterGate(lambda name: None, current="a")
        >>> async def one():  # doctest: +SKIP
        ...     async with gate.use("b"):
        ...         ...
    """

    def __init__(self, activate: Callable[[str | None], None], current: str | None) -> None:
        self.activate = activate
        self.current = current
        self.active = 0
        self.waiting: dict[str | None, int] = defaultdict(int)
        self.cond = asyncio.Condition()

    def _may_enter(self, adapter: str | None) -> bool:
        if self.active == 0:
            return True
        others = any(n for a, n in self.waiting.items() if a != adapter)
        return adapter == self.current and not others  # no overtaking a waiting adapter

    @contextlib.asynccontextmanager
    async def use(self, adapter: str | None) -> AsyncIterator[None]:
        """Hold ``adapter`` active for the body (waiting for its turn).

        Example::

            >>> async with gate.use("b"):  # doctest: +SKIP
            ...     await generate_with_b()
        """
        async with self.cond:
            self.waiting[adapter] += 1
            try:
                await self.cond.wait_for(lambda: self._may_enter(adapter))
            finally:
                self.waiting[adapter] -= 1
            if adapter != self.current:
                self.activate(adapter)  # nothing is in flight: the batch is empty
                self.current = adapter
            self.active += 1
        try:
            yield
        finally:
            async with self.cond:
                self.active -= 1
                self.cond.notify_all()


class _Incremental:
    """Decodes a growing list of token ids into text pieces, cutting at stop strings.

    Only the last few tokens are decoded at each step (the window technique of TGI and
    vLLM: a token's text can depend on its neighbours), so a long answer costs linear, not
    quadratic, decoding. Text that could be the start of a stop string, or an incomplete
    UTF-8 character, is held back until the next token decides it.
    """

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.hold = max((len(s) for s in stop), default=1) - 1
        self.sent = 0
        self.text = ""
        self.prefix = 0  # ids[prefix:read] decode to the tail of self.text
        self.read = 0
        self.stopped = False

    def _decode(self, ids: list[int], final: bool) -> None:
        decode = self.tokenizer.decode
        before = decode(ids[self.prefix : self.read], skip_special_tokens=True)
        after = decode(ids[self.prefix :], skip_special_tokens=True)
        if len(after) > len(before) and (final or not after.endswith("\ufffd")):
            self.text += after[len(before) :]
            self.prefix, self.read = self.read, len(ids)

    def update(self, ids: list[int], final: bool) -> str:
        """The new text to send for the tokens so far (all of it when ``final``)."""
        self._decode(ids, final)
        text = self.text
        for s in self.stop:
            at = text.find(s, max(0, self.sent - len(s)))
            if at != -1:
                text, final, self.stopped = text[:at], True, True
        self.text = text
        end = len(text) if final else len(text) - self.hold
        if end <= self.sent:
            return ""
        piece, self.sent = text[self.sent : end], end
        return piece


class _FlagCriteria:
    """A stopping criterion for ``generate``: stops once ``flag`` is set (a stop string
    was found, or the client went away)."""

    def __init__(self) -> None:
        self.flag = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool)


class _QueueStreamer:
    """A ``generate`` streamer handing each new token to an asyncio queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        self.loop = loop
        self.queue = queue
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate's first put is the prompt
            self.prompt_seen = True
            return
        self.loop.call_soon_threadsafe(self.queue.put_nowait, value.reshape(-1).tolist())

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)


class TextEngine:
    """A causal LM and its tokenizer, generating for the OpenAI routes.

    ``names`` maps each served model name to its PEFT adapter (None: the model as loaded,
    adapters off). Call :meth:`start` once from the event loop's thread.

    Example::

        >>> engine = TextEngine.load(TextSpec("tiny", "tiny-llama"))  # doctest: +SKIP
        >>> engine.start()  # doctest: +SKIP
        >>> async for piece in engine.generate(request):  # doctest: +SKIP
        ...     print(piece.text, end="")
    """

    def __init__(self, model: Any, tokenizer: Any, names: dict[str, str | None]) -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.names = names
        self.torch = torch
        config = (
            model.config.get_text_config()
            if hasattr(model.config, "get_text_config")
            else model.config
        )
        self.context = int(getattr(config, "max_position_embeddings", 0) or 2048)
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos)
        self.device = str(model.device)
        self.manager: Any = None  # greedy
        self.sampling: Any = None  # sampled, unseeded
        self.sampler = ThreadPoolExecutor(1, thread_name_prefix="sampled-generate")
        self.sample_lock = threading.Lock()
        self.gate: AdapterGate | None = None
        adapters = {a for a in names.values() if a is not None}
        if adapters:
            self.gate = AdapterGate(self._activate, current=self._initial_adapter())

    # -- loading --------------------------------------------------------------------------
    @classmethod
    def load(cls, spec: TextSpec) -> TextEngine:
        """Load the model (with its adapters) and tokenizer that ``spec`` names.

        Example::

            >>> TextEngine.load(TextSpec("tiny", "tiny-llama")).context  # doctest: +SKIP
            512
        """
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = getattr(torch, spec.dtype) if spec.dtype else None
        if dtype is None:
            dtype = torch.bfloat16 if spec.device.startswith("cuda") else torch.float32
        model = AutoModelForCausalLM.from_pretrained(spec.model_dir, dtype=dtype)
        tok_dir = spec.model_dir
        if not (Path(spec.model_dir) / "tokenizer_config.json").exists() and spec.adapter:
            tok_dir = spec.adapter
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        names: dict[str, str | None] = {spec.name: None}
        if spec.adapter or spec.adapters:
            from peft import PeftModel

            first = spec.adapter or next(iter(spec.adapters.values()))
            first_name = spec.name if spec.adapter else next(iter(spec.adapters))
            peft_model = PeftModel.from_pretrained(model, first, adapter_name=first_name)
            names[first_name] = first_name
            for name, path in spec.adapters.items():
                if name != first_name:
                    peft_model.load_adapter(path, adapter_name=name)
                names[name] = name
            model = peft_model
        model = model.to(spec.device).eval()
        return cls(model, tokenizer, names)

    def _initial_adapter(self) -> str | None:
        return getattr(self.model, "active_adapter", None)

    def _activate(self, adapter: str | None) -> None:
        """Make ``adapter`` the one every LoRA layer applies (None: the base, adapters off)."""
        tuner = self.model.base_model
        if adapter is None:
            tuner.disable_adapter_layers()
        else:
            tuner.enable_adapter_layers()
            self.model.set_adapter(adapter)
        log.info("active adapter: %s", adapter)

    # -- the continuous-batching manager -------------------------------------------------
    def _cb_config(self) -> Any:
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        if self.device.startswith("cuda"):
            return ContinuousBatchingConfig()  # sized from free GPU memory by transformers
        # on CPU there is no free device memory to size the cache from: hold the KV cache
        # of CPU_CONCURRENCY full-context requests, at most CPU_CACHE_TOKENS tokens (more
        # requests wait in the manager's queue), and let a whole-context prompt fit a batch
        page = 64
        tokens = min(CPU_CONCURRENCY * self.context, max(CPU_CACHE_TOKENS, 2 * self.context))
        return ContinuousBatchingConfig(
            page_size=page,
            num_blocks=math.ceil(tokens / page),
            max_batch_tokens=max(self.context, 1024),
            allow_block_sharing=False,
        )

    def start(self) -> None:
        """Start the continuous-batching manager's thread and warm both lanes up (the
        first step of each path is several times slower than the next ones).

        Example::

            >>> engine.start()  # doctest: +SKIP
        """
        from transformers import GenerationConfig

        inner = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        gen = GenerationConfig(
            do_sample=False, eos_token_id=sorted(self.eos), pad_token_id=self.pad,
            max_new_tokens=16,
        )  # fmt: skip
        self.manager = inner.init_continuous_batching(
            generation_config=gen, continuous_batching_config=self._cb_config()
        )
        self.manager.start()
        # per-request temperature and top-p exist only for processors the config creates,
        # so its defaults must be neither None nor neutral; top_k=0: OpenAI has no top-k
        sample = GenerationConfig(
            do_sample=True, temperature=0.7, top_p=0.9, top_k=0, eos_token_id=sorted(self.eos),
            pad_token_id=self.pad, max_new_tokens=16,
        )  # fmt: skip
        cb = self._cb_config()
        cb.per_request_processors = True
        self.sampling = inner.init_continuous_batching(
            generation_config=sample, continuous_batching_config=cb
        )
        self.sampling.start()
        ids = self.tokenizer("warm up", add_special_tokens=False)["input_ids"] or [self.pad]
        for manager, extra in ((self.manager, {}), (self.sampling, {"temperature": 1.0})):
            rid = manager.add_request(ids, max_new_tokens=2, **extra)
            for _ in manager.request_id_iter(rid):
                pass
        with self.torch.inference_mode():
            self.model.generate(
                self.torch.tensor([ids], device=self.device), max_new_tokens=2, do_sample=True,
                pad_token_id=self.pad,
            )  # fmt: skip

    def close(self) -> None:
        """Stop the manager's thread (pending requests end).

        Example::

            >>> engine.close()  # doctest: +SKIP
        """
        for manager in (self.manager, self.sampling):
            if manager is not None:
                with contextlib.suppress(Exception):
                    manager.stop(block=True, timeout=5)
        self.sampler.shutdown(wait=False, cancel_futures=True)

    # -- requests -------------------------------------------------------------------------
    def encode(self, req: GenRequest) -> list[int]:
        """The prompt's token ids: chat messages through the tokenizer's chat template
        (with the generation prompt), or a completion's text or ids.

        Example::

            >>> engine.encode(parse_request(body, "chat"))[:3]  # doctest: +SKIP
            [1, 352, 201]
        """
        if req.kind == "chat":
            if not getattr(self.tokenizer, "chat_template", None):
                raise OpenAIError(
                    400, "this model's tokenizer has no chat template: use /v1/completions",
                    param="messages",
                )  # fmt: skip
            try:
                out = self.tokenizer.apply_chat_template(
                    req.messages, add_generation_prompt=True, tokenize=True, return_dict=True
                )
            except Exception as exc:  # the template's own checks (roles, order, ...)
                raise OpenAIError(
                    400, f"the chat template refused the messages: {exc}", param="messages"
                ) from None
            return list(out["input_ids"])
        if isinstance(req.prompt, list):
            vocab = len(self.tokenizer)
            if max(req.prompt) >= vocab:
                raise OpenAIError(400, f"token ids must be below {vocab}", param="prompt")
            return list(req.prompt)
        return list(self.tokenizer(req.prompt or "", add_special_tokens=True)["input_ids"])

    def budget(
        self,
        prompt_len: int,
        max_tokens: int | None,
        param: str = "max_tokens",
        prompt_param: str = "messages",
    ) -> int:
        """How many tokens to generate; a prompt that leaves no room, or a ``max_tokens``
        past the context, is refused as OpenAI does (400 ``context_length_exceeded``).

        Example::

            >>> engine.budget(500, None)  # a 512-token context  # doctest: +SKIP
            12
        """
        if prompt_len == 0:
            raise OpenAIError(400, "the prompt is empty", param=prompt_param)
        room = self.context - prompt_len
        if room <= 0 or (max_tokens is not None and max_tokens > room):
            asked = f" plus {max_tokens} to generate" if max_tokens is not None else ""
            raise OpenAIError(
                400,
                f"This model's maximum context length is {self.context} tokens. However, you "
                f"requested {prompt_len + (max_tokens or 0)} tokens ({prompt_len} in the "
                f"prompt{asked}). Please reduce the prompt or the completion length.",
                param=prompt_param if room <= 0 else param,
                code="context_length_exceeded",
            )
        return max_tokens if max_tokens is not None else room

    async def generate(self, req: GenRequest, ids: list[int], budget: int) -> AsyncIterator[Piece]:
        """Generate for a validated request: text pieces, then a last piece with the
        finish reason and token counts.

        Example::

            >>> async for piece in engine.generate(req, ids, 16):  # doctest: +SKIP
            ...     print(piece.text, end="")
        """
        adapter = self.names[req.model]
        gate = self.gate.use(adapter) if self.gate is not None else contextlib.nullcontext()
        async with gate:  # type: ignore[attr-defined]
            if req.temperature == 0.0:
                lane = self._batched(self.manager, req, ids, budget, {})
            elif req.seed is None:
                kwargs = {"temperature": req.temperature, "top_p": req.top_p}
                lane = self._batched(self.sampling, req, ids, budget, kwargs)
            else:
                lane = self._seeded(req, ids, budget)
            async for piece in lane:
                yield piece

    async def _batched(
        self, manager: Any, req: GenRequest, ids: list[int], budget: int, kwargs: dict[str, Any]
    ) -> AsyncIterator[Piece]:
        queue: asyncio.Queue = asyncio.Queue()
        rid = f"req-{secrets.token_hex(8)}"
        manager.register_result_handler(rid, queue.put_nowait)  # before it can answer
        # a whole answer without stop strings needs no token before the last one
        streaming = req.stream or bool(req.stop)
        manager.add_request(
            ids, request_id=rid, max_new_tokens=budget, streaming=streaming, **kwargs
        )
        decoder = _Incremental(self.tokenizer, req.stop)
        done = False
        try:
            while True:
                out = await queue.get()
                if out.error is not None:
                    raise RuntimeError(f"generation failed: {out.error}")
                tokens = list(out.generated_tokens)
                final = out.is_finished()
                text = decoder.update(tokens, final)
                if decoder.stopped or final:
                    done = True
                    yield self._last(text, tokens, ids, budget, decoder.stopped)
                    return
                if text:
                    yield Piece(text)
        finally:
            if not done or decoder.stopped:  # the client left, or a stop string: free its slot
                manager.cancel_request(rid)
                with manager.output_router._lock:
                    manager.output_router.result_handlers.pop(rid, None)

    async def _seeded(self, req: GenRequest, ids: list[int], budget: int) -> AsyncIterator[Piece]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        streamer = _QueueStreamer(loop, queue)
        stopper = _FlagCriteria()
        seed = req.seed
        torch = self.torch

        def run() -> None:
            from transformers import StoppingCriteriaList

            try:
                # the greedy manager draws no random numbers; the sampling one is paused
                with self.sample_lock, self.sampling.pause(), torch.inference_mode():
                    torch.manual_seed(seed)
                    self.model.generate(
                        torch.tensor([ids], device=self.device), attention_mask=None,
                        max_new_tokens=budget, do_sample=True, temperature=req.temperature,
                        top_p=req.top_p, top_k=0, eos_token_id=sorted(self.eos),
                        pad_token_id=self.pad, streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([stopper]),
                    )  # fmt: skip
            except BaseException as exc:
                loop.call_soon_threadsafe(queue.put_nowait, exc)
                streamer.end()

        future = loop.run_in_executor(self.sampler, run)
        decoder = _Incremental(self.tokenizer, req.stop)
        tokens: list[int] = []
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise RuntimeError(f"generation failed: {item}")
                final = item is None
                if not final:
                    tokens += item
                text = decoder.update(tokens, final)
                if decoder.stopped or final:
                    yield self._last(text, tokens, ids, budget, decoder.stopped)
                    return
                if text:
                    yield Piece(text)
        finally:
            stopper.flag.set()
            with contextlib.suppress(BaseException):
                await future

    def _last(
        self, text: str, tokens: list[int], ids: list[int], budget: int, stopped: bool
    ) -> Piece:
        ended = stopped or (tokens and tokens[-1] in self.eos) or len(tokens) < budget
        return Piece(
            text,
            finish_reason="stop" if ended else "length",
            prompt_tokens=len(ids),
            completion_tokens=len(tokens),
        )


def measure_in_process(engine: TextEngine, ids: list[int], max_new_tokens: int) -> dict[str, float]:
    """In-process anchors for the serving benchmark: seconds to the first token and for
    the whole greedy ``generate`` of ``max_new_tokens`` tokens on ``engine``'s model.

    Example::

        >>> measure_in_process(engine, ids, 32)  # doctest: +SKIP
        {'first_token_s': 0.004, 'generate_s': 0.061, 'tokens': 32}
    """
    torch = engine.torch
    x = torch.tensor([ids], device=engine.device)
    times: list[float] = []

    class First:
        def put(self, value: Any) -> None:
            times.append(time.perf_counter())

        def end(self) -> None:
            pass

    with torch.inference_mode():
        t0 = time.perf_counter()
        out = engine.model.generate(
            x, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
            pad_token_id=engine.pad, streamer=First(),
        )  # fmt: skip
        total = time.perf_counter() - t0
    first = times[1] - t0 if len(times) > 1 else total  # times[0]: the prompt
    return {
        "first_token_s": first,
        "generate_s": total,
        "tokens": int(out.shape[1] - x.shape[1]),
    }
