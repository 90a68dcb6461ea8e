"""The LightningModule of a fine-tune: a Hugging Face causal LM with LoRA adapters (peft).

It travels to the worker light: the base model's directory or hub id, the encoded
examples and a few sample prompts, never weights. The worker builds the model in
``configure_model()`` on its own device; checkpoints hold the LoRA adapter only (the
trainable parameters), and loading accepts exactly that.

What it logs, through the run's ordinary logger: ``train_loss``, ``train_ppl``,
``tokens_per_s`` (non-padding tokens per second, all ranks), ``val_loss`` (averaged over
the validation tokens) and ``val_ppl``. At each validation, rank zero answers the sample
prompts greedily and writes them to the run's ``samples`` in the store.
"""

from __future__ import annotations

import collections
import math
import time
import warnings
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch.utils.data import DataLoader

from . import data as data_mod

__all__ = ["FineTuneModule", "base_dtype"]

MAX_SAMPLE_ROUNDS = 20  # validations whose sample answers the store keeps
_RATE_WINDOW = 20  # steps over which tokens_per_s is measured


def base_dtype(precision: str | None, device: torch.device | None, auto: bool) -> torch.dtype:
    """The dtype the base weights load in: bf16 under a bf16 precision, fp16 under a 16
    one; with the precision left to us (``auto``), bf16 on a CUDA device that supports it
    (the LoRA adapters stay fp32, peft's default), fp32 elsewhere.

    Example::

        >>> base_dtype("bf16-mixed", None, False), base_dtype("32-true", None, True)
        (torch.bfloat16, torch.float32)
    """
    p = str(precision or "")
    if "bf16" in p:
        return torch.bfloat16
    if p.startswith("16"):
        return torch.float16
    if p.startswith("64"):
        return torch.float64
    if auto and device is not None and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class FineTuneModule(LightningModule):
    """LoRA fine-tuning of ``base`` on encoded examples (see :func:`jupyter_ext.finetune`,
    which builds it; :meth:`jupyter_ext.training.run.Run.trained_module` returns it with the
    adapter loaded).

    Example::

        >>> m = run.trained_module()  # doctest: +SKIP
        >>> m.chat("What is Ada's cat called?")  # doctest: +SKIP
        'Pixel.'
        >>> m.model  # the peft model  # doctest: +SKIP
    """

    def __init__(
        self,
        base: str,
        train_examples: list[dict[str, list[int]]],
        val_examples: list[dict[str, list[int]]],
        sample_prompts: list[tuple[str, str]],
        *,
        lora_r: int = 16,
        lora_alpha: int = 32,
        lora_dropout: float = 0.0,
        target_modules: str | list[str] = "all-linear",
        learning_rate: float = 2e-4,
        batch_size: int = 8,
        max_length: int = 1024,
        chat_template: str | None = None,
        auto_precision: bool = True,
        max_new_tokens: int = 32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.base = base
        self.train_examples = train_examples
        self.val_examples = val_examples
        self.sample_prompts = sample_prompts
        self.lora_r, self.lora_alpha, self.lora_dropout = lora_r, lora_alpha, lora_dropout
        self.target_modules = target_modules
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.chat_template = chat_template
        self.auto_precision = auto_precision
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.model: Any = None  # the peft model, built by configure_model()
        self.tokenizer: Any = None
        self.save_hyperparameters(
            {
                "base": base,
                "lora_r": lora_r,
                "lora_alpha": lora_alpha,
                "lora_dropout": lora_dropout,
                "target_modules": target_modules,
                "learning_rate": learning_rate,
                "batch_size": batch_size,
                "max_length": max_length,
                "train_examples": len(train_examples),
                "val_examples": len(val_examples),
            }
        )
        self._init_transient()

    def _init_transient(self) -> None:
        self._window: collections.deque[tuple[float, int]] = collections.deque(maxlen=_RATE_WINDOW)
        self._val_loss_sum = 0.0
        self._val_tokens = 0
        self._samples: list[dict[str, Any]] = []

    # The payload must never carry weights: a built module pickles as an unbuilt one.
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_modules"] = {k: v for k, v in state["_modules"].items() if k != "model"}
        state["model"] = None
        state["tokenizer"] = None
        for key in ("_window", "_samples"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._init_transient()

    # -- building ------------------------------------------------------------------------
    def load_tokenizer(self) -> Any:
        """The base's tokenizer (with the run's chat template, if one was given)."""
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.base)
            if self.chat_template is not None:
                tok.chat_template = self.chat_template
            self.tokenizer = tok
        return self.tokenizer

    def configure_model(self) -> None:
        """Load the base on this process and add the LoRA adapters (once: Lightning may
        call this again, e.g. when a fit follows ``Run.load_model``)."""
        if self.model is not None:
            return
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        trainer = self._trainer
        precision = str(trainer.precision) if trainer is not None else None
        device = trainer.strategy.root_device if trainer is not None else None
        dtype = base_dtype(precision, device, self.auto_precision and trainer is not None)
        tok = self.load_tokenizer()
        # Loaded on the CPU; Lightning moves the module to its device after this hook.
        # A tensor-init device context (some strategies set one) must not place it early.
        with torch.device("cpu"):
            base = AutoModelForCausalLM.from_pretrained(self.base, dtype=dtype)
        if base.generation_config.pad_token_id is None:
            base.generation_config.pad_token_id = _pad_id(tok)
        config = LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=self.target_modules,
            task_type="CAUSAL_LM",
        )
        torch.manual_seed(self.seed)  # the adapters' initialisation, the same on every rank
        with warnings.catch_warnings():
            # peft reads transformers' deprecated is_gradient_checkpointing (a FutureWarning
            # shown in the notebook at every load, nothing the user can act on)
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            self.model = get_peft_model(base, config)
        # from_pretrained hands the model back in eval mode; Lightning keeps modes as found
        self.model.train()

    def _trainable_names(self, prefix: str = "") -> set[str]:
        return {prefix + n for n, p in self.named_parameters() if p.requires_grad}

    # Checkpoints hold the adapter only: the base is the base's directory, not ours to copy.
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        full = super().state_dict(*args, **kwargs)
        keep = self._trainable_names(kwargs.get("prefix", ""))
        return collections.OrderedDict((k, v) for k, v in full.items() if k in keep)

    def load_state_dict(  # type: ignore[override]
        self, state_dict: Any, strict: bool = True, assign: bool = False
    ) -> Any:
        if self.model is None:
            self.configure_model()
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict:
            trainable = self._trainable_names()
            missing = [k for k in result.missing_keys if k in trainable]
            if missing or result.unexpected_keys:
                raise RuntimeError(
                    "the checkpoint does not match this fine-tune's adapter: "
                    f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]} "
                    f"(were lora_r/target_modules changed? base {self.base})"
                )
        return result

    # -- data --------------------------------------------------------------------------
    def _loader(self, examples: list[dict[str, list[int]]], shuffle: bool) -> DataLoader:
        pad = _pad_id(self.load_tokenizer())
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            examples,  # type: ignore[arg-type]  # a list is a map-style dataset
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator if shuffle else None,
            collate_fn=lambda batch: data_mod.collate(batch, pad),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_examples, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_examples, shuffle=False)

    # -- training ----------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=0.0)

    def forward(self, **batch: Any) -> Any:
        return self.model(**batch)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train_loss", loss, on_step=True, on_epoch=False)
        self.log("train_ppl", torch.exp(loss.detach().float()), on_step=True, on_epoch=False)
        self._count_tokens(int(batch["attention_mask"].sum()))
        return loss

    def _count_tokens(self, tokens: int) -> None:
        now = time.perf_counter()
        self._window.append((now, tokens))
        if len(self._window) >= 2:
            # tokens of every step after the first in the window, over the time they took
            elapsed = now - self._window[0][0]
            counted = sum(n for _, n in list(self._window)[1:])
            if elapsed > 0:
                world = self.trainer.world_size if self._trainer is not None else 1
                self.log("tokens_per_s", counted * world / elapsed, on_step=True, on_epoch=False)

    def on_validation_epoch_start(self) -> None:
        self._window.clear()  # a validation's time is not training throughput
        self._val_loss_sum, self._val_tokens = 0.0, 0

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        tokens = int((batch["labels"][:, 1:] != data_mod.IGNORE).sum())
        self._val_loss_sum += float(loss) * tokens
        self._val_tokens += tokens
        return loss

    def on_validation_epoch_end(self) -> None:
        if self._val_tokens:
            loss = self._val_loss_sum / self._val_tokens  # per token, not per batch
            self.log("val_loss", loss, sync_dist=True)
            self.log("val_ppl", math.exp(min(loss, 50.0)), sync_dist=True)
        if self.sample_prompts and self.trainer.is_global_zero:
            self._write_samples()

    # -- samples -------------------------------------------------------------------------
    def _write_samples(self) -> None:
        """Greedy answers to the sample prompts, kept in the run's ``samples`` (newest last)."""
        answers = [
            {"prompt": shown, "output": self._greedy(text, self.max_new_tokens)}
            for shown, text in self.sample_prompts
        ]
        step = 0 if self.trainer.sanity_checking else int(self.trainer.global_step)
        self._samples.append({"step": step, "epoch": int(self.current_epoch), "samples": answers})
        del self._samples[:-MAX_SAMPLE_ROUNDS]
        target = _store_of(self.trainer)
        if target is not None:
            store, run_id = target
            try:
                store.update_run(run_id, samples=list(self._samples))
            except Exception:  # a busy store must not fail the run; the next round rewrites
                pass

    def _greedy(self, text: str, max_new_tokens: int) -> str:
        tok = self.load_tokenizer()
        enc = tok(text, return_tensors="pt", add_special_tokens=not _has_special_start(tok, text))
        enc = {k: v.to(self.device) for k, v in enc.items()}
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=_pad_id(tok),
                )
        finally:
            self.model.train(was_training)
        return tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)

    def merged_model(self) -> Any:
        """The transformers model with the adapter merged into the base's weights (what
        :meth:`~jupyter_ext.training.run.Run.load_model` returns for a fine-tune): an
        ordinary ``PreTrainedModel`` for ``generate``, ``save_pretrained`` or a pipeline.

        Example::

            >>> model = run.load_model()  # doctest: +SKIP
            >>> type(model).__name__  # doctest: +SKIP
            'LlamaForCausalLM'
        """
        if self.model is None:
            self.configure_model()
        return self.model.merge_and_unload().eval()

    def complete(self, prompt: str, max_new_tokens: int = 32) -> str:
        """The model's greedy continuation of ``prompt`` (text in, text out).

        Example::

            >>> run.trained_module().complete("The capital of Freedonia is")  # doctest: +SKIP
            ' Fredville.'
        """
        if self.model is None:
            self.configure_model()
        return self._greedy(prompt, max_new_tokens)

    def chat(self, messages: str | list[dict[str, str]], max_new_tokens: int = 32) -> str:
        """The model's greedy reply to ``messages`` (or one user message), formatted with the
        tokenizer's chat template.

        Example::

            >>> run.trained_module().chat("What is Ada's cat called?")  # doctest: +SKIP
            'Pixel.'
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        tok = self.load_tokenizer()
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.complete(text, max_new_tokens)


def _pad_id(tok: Any) -> int:
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return int(pad) if pad is not None else 0


def _has_special_start(tok: Any, text: str) -> bool:
    """A chat-formatted prompt already starts with the template's own special tokens."""
    bos = getattr(tok, "bos_token", None)
    return bool(bos) and text.startswith(bos)


def _store_of(trainer: Any) -> tuple[Any, str] | None:
    """The store and run id the worker's own logger writes to: a cluster run's channel
    (which forwards ``update_run``) or the workspace's store; None outside a worker."""
    from ..training.store_logger import StoreLogger

    for logger in getattr(trainer, "loggers", ()):
        if isinstance(logger, StoreLogger):
            return logger._store, logger._run_id  # the worker's own store object
    return None
