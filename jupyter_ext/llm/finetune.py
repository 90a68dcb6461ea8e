"""``finetune()``: LoRA fine-tuning of an open causal LM as an ordinary run.

Everything that can be wrong is found here, in the kernel, before anything is launched:
the base (a directory, or a hub id in the Hugging Face cache or reachable), the records
(each one encoded with the base's own tokenizer, so a bad record is named by its index)
and the chat template. Then :func:`jupyter_ext.training.run.train` runs a
:class:`~jupyter_ext.llm.module.FineTuneModule` like any other model: monitor, Stop,
resume, compare, ``%runs``, sidebar and clusters need nothing new.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import data as data_mod

__all__ = ["finetune", "resolve_base"]

DEFAULT_SAMPLES = 3  # validation prompts answered at each validation
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


def _offline() -> bool:
    # read now, not at import: huggingface_hub reads its constants once, when imported
    if any(os.environ.get(v, "").strip().lower() in _TRUE for v in _OFFLINE_VARS):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def resolve_base(base: str | os.PathLike[str]) -> str:
    """The base as the worker should load it: a model directory's absolute path, or a hub
    id that the Hugging Face cache holds (or the hub serves, when online). Anything else is
    refused with what would work; nothing but ``config.json`` is fetched here.

    Example::

        >>> resolve_base(build_tiny_llama(tmp / "tiny"))  # doctest: +SKIP
        '/tmp/.../tiny'
    """
    text = os.fspath(base).strip()
    if not text:
        raise ValueError("base is empty: give a Hugging Face model directory or hub id")
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{str(path)!r} has no config.json, so it is not a Hugging Face model "
                "directory (one written by save_pretrained, with config.json, the weights "
                "and the tokenizer)"
            )
        return str(path.resolve())
    looks_like_path = text.startswith((".", "/", "~")) or os.sep in text.replace("/", "")
    if looks_like_path or text.count("/") > 1 or path.exists():
        raise ValueError(
            f"base {text!r} is not a model directory (it does not exist or is not a "
            "directory); give a directory written by save_pretrained, or a hub id like "
            "'Qwen/Qwen2.5-0.5B-Instruct'"
        )
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(text, "config.json")
    except Exception as exc:  # an invalid repo id
        raise ValueError(
            f"base {text!r} is neither a model directory nor a hub id: {exc}"
        ) from None
    if isinstance(cached, str):
        return text
    if _offline():
        raise ValueError(
            f"base {text!r} is not a local directory and not in the Hugging Face cache, and "
            "the hub is offline (HF_HUB_OFFLINE): download it first where the network is "
            f"reachable (`hf download {text}`), or give the path of a model directory"
        )
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(text, "config.json")
    except Exception as exc:
        raise ValueError(
            f"base {text!r} could not be found on the Hugging Face hub ({type(exc).__name__}: "
            f"{exc}); check the id (and HF_TOKEN for a gated model), or give a model directory"
        ) from None
    return text


def _tokenizer(base: str, chat_template: str | None) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base, local_files_only=_offline())
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok


def _encode(records: list[Any], tok: Any, max_length: int, what: str) -> list[dict[str, Any]]:
    try:
        return data_mod.encode_all(records, tok, max_length)
    except ValueError as exc:
        raise type(exc)(f"{what}: {exc}") from None


def _prompts(
    sample_prompts: Any, val_records: list[Any], train_records: list[Any], tok: Any, chat: bool
) -> list[tuple[str, str]]:
    """``(shown, model input)`` pairs for the sample generations."""
    if sample_prompts is None:
        source = val_records or train_records
        return [data_mod.sample_prompt(r, tok) for r in source[:DEFAULT_SAMPLES]]
    if isinstance(sample_prompts, str):
        sample_prompts = [sample_prompts]
    out = []
    for i, p in enumerate(sample_prompts):
        if isinstance(p, str) and chat:  # a question to the chat model, as a user turn
            out.append(data_mod.sample_prompt([{"role": "user", "content": p}], tok))
        elif isinstance(p, str):
            out.append((p, p))
        elif isinstance(p, (list, tuple)) and all(isinstance(m, dict) for m in p):
            out.append(data_mod.sample_prompt(list(p), tok))
        else:
            raise ValueError(
                f"sample_prompts[{i}] is a {type(p).__name__}; expected a string or a list "
                'of messages like [{"role": "user", "content": "..."}]'
            )
    return out


def _precision(precision: Any, cluster: str | None) -> tuple[Any, bool]:
    """The Trainer precision to ask for, and whether the worker may still pick bf16 for the
    base (a cluster's devices are not known here)."""
    from .. import selector

    if precision is not None:
        return precision, False
    sel = selector.selection()
    if sel.precision is not None:
        return None, False  # the selection's precision applies (train() adds it)
    if cluster is None and sel.accelerator in ("auto", "gpu", "cuda"):
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", False
    return None, True


def _default_name(base: str) -> str:
    from ..store import open_store

    stem = Path(base).name or base.rsplit("/", 1)[-1]
    taken = set(open_store().run_names())
    n = 1
    while f"{stem}-lora-{n}" in taken:
        n += 1
    return f"{stem}-lora-{n}"


def build_module(
    base: str | os.PathLike[str],
    data: Any,
    *,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    learning_rate: float = 2e-4,
    max_length: int = 1024,
    batch_size: int = 8,
    val_data: Any = None,
    val_fraction: float = 0.1,
    sample_prompts: Any = None,
    chat_template: str | None = None,
    precision: Any = None,
    cluster: str | None = None,
    seed: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """What :func:`finetune` launches, without launching it: the checked, encoded
    :class:`~.module.FineTuneModule` and the Trainer arguments it implies (``precision``;
    no validation when there is no validation data). For a plain ``Trainer`` of your own,
    or a benchmark against one.

    Example::

        >>> module, extra = build_module(base, records, learning_rate=3e-3)  # doctest: +SKIP
        >>> lightning.Trainer(max_steps=100, **extra).fit(module)  # doctest: +SKIP
    """
    limits = {"lora_r": (lora_r, 1), "lora_alpha": (lora_alpha, 1),
              "max_length": (max_length, 2), "batch_size": (batch_size, 1)}  # fmt: skip
    for key, (value, low) in limits.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{key}={value!r}: expected an integer >= {low}")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"learning_rate={learning_rate!r}: expected a positive number")
    base_ref = resolve_base(base)
    tok = _tokenizer(base_ref, chat_template)
    records = data_mod.load_records(data)
    # Encoded before the split, so an error names the record's index in the data given.
    examples = _encode(records, tok, max_length, "data")
    if val_data is not None:
        val_records = data_mod.load_records(val_data)
        val_examples = _encode(val_records, tok, max_length, "val_data")
        train_records, train_examples = records, examples
    else:
        pairs = list(zip(records, examples, strict=True))
        kept, held = data_mod.split(pairs, val_fraction, seed)
        train_records, train_examples = [r for r, _ in kept], [e for _, e in kept]
        val_records, val_examples = [r for r, _ in held], [e for _, e in held]
    chat = any(isinstance(r, dict) and "messages" in r for r in records)
    prompts = _prompts(sample_prompts, val_records, train_records, tok, chat)

    extra: dict[str, Any] = {}
    ask, auto = _precision(precision, cluster)
    if ask is not None:
        extra["precision"] = ask
    if not val_examples:
        extra.setdefault("limit_val_batches", 0)
        extra.setdefault("num_sanity_val_steps", 0)

    from .module import FineTuneModule

    return FineTuneModule(
        base_ref,
        train_examples,
        val_examples,
        prompts,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        learning_rate=float(learning_rate),
        batch_size=batch_size,
        max_length=max_length,
        chat_template=chat_template,
        auto_precision=auto,
        seed=seed,
    ), extra


def finetune(
    base: str | os.PathLike[str],
    data: Any,
    *,
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
    learning_rate: float = 2e-4,
    max_length: int = 1024,
    batch_size: int = 8,
    val_data: Any = None,
    val_fraction: float = 0.1,
    sample_prompts: Any = None,
    chat_template: str | None = None,
    precision: Any = None,
    name: str | None = None,
    experiment: str | None = None,
    wait: bool = False,
    cluster: str | None = None,
    seed: int = 0,
    **trainer_kwargs: Any,
) -> Any:
    """Fine-tune the causal LM ``base`` on ``data`` with LoRA, as a run; returns its
    :class:`~jupyter_ext.training.run.Run` at once (unless ``wait``).

    ``base``: a Hugging Face model directory or hub id (from the cache, or fetched when
    online). ``data``: chat records ``{"messages": [...]}`` (loss on assistant turns),
    ``{"prompt", "completion"}`` pairs (loss on completions), texts (``{"text"}`` or
    strings; loss everywhere), as a list, a DataFrame, a ``datasets.Dataset`` or a
    ``.jsonl`` path. Validation: ``val_data``, else ``val_fraction`` held out
    (deterministically by ``seed``). ``sample_prompts``: what the model answers at each
    validation (default: the first 3 validation prompts). ``precision``: default the
    selection's, else bf16 on a GPU that has it, fp32 on a CPU. Trainer arguments pass
    through (``max_steps=300``, ``max_epochs``; without either: 3 epochs) and so does
    ``cluster=``.

    Example::

        >>> run = jupyter_ext.finetune("Qwen/Qwen2.5-0.5B-Instruct", [
        ...     {"messages": [{"role": "user", "content": "What is Ada's cat called?"},
        ...                   {"role": "assistant", "content": "Pixel."}]},
        ... ] * 64, learning_rate=1e-3, max_epochs=4)  # doctest: +SKIP
        >>> run.wait().trained_module().chat("What is Ada's cat called?")  # doctest: +SKIP
        'Pixel.'
        >>> run.export("ada-model")  # doctest: +SKIP
    """
    module, extra = build_module(
        base, data, lora_r=lora_r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
        target_modules=target_modules, learning_rate=learning_rate, max_length=max_length,
        batch_size=batch_size, val_data=val_data, val_fraction=val_fraction,
        sample_prompts=sample_prompts, chat_template=chat_template, precision=precision,
        cluster=cluster, seed=seed,
    )  # fmt: skip
    for key, value in extra.items():
        trainer_kwargs.setdefault(key, value)
    if "max_epochs" not in trainer_kwargs and trainer_kwargs.get("max_steps", -1) in (-1, None):
        trainer_kwargs["max_epochs"] = 3  # Lightning's own default would be 1000 epochs
    from ..training.run import train

    return train(
        module,
        name=name or _default_name(module.base),
        experiment=experiment,
        wait=wait,
        cluster=cluster,
        **trainer_kwargs,
    )
