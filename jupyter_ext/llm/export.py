"""Export a fine-tune: a Hugging Face directory with the adapter merged, or the adapter alone.

The merged directory (safetensors weights, config, generation config, tokenizer and its
chat template) is what ``AutoModelForCausalLM.from_pretrained``, vLLM, TGI and
llama.cpp's converter read; its weights are in the base's own dtype. The adapter alone is
PEFT's format (``adapter_config.json`` and ``adapter_model.safetensors``, naming the base
in ``base_model_name_or_path``), for ``PeftModel.from_pretrained`` or vLLM's LoRA serving.

This module reads a run through its ``row`` and ``trained_module()`` only, so it never
imports the run module (which imports this one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["MODEL_CLASS", "export_run", "is_finetune_run"]

# How a fine-tune's run row is recognised (its LightningModule's class); a string, so that
# telling runs apart imports neither torch nor transformers.
MODEL_CLASS = "jupyter_ext.llm.module.FineTuneModule"


def is_finetune_run(row_or_run: Any) -> bool:
    """Whether a run (a ``Run``, its store record, or a row as a dict) is a fine-tune.

    Example::

        >>> is_finetune_run({"model_class": "jupyter_ext.llm.module.FineTuneModule"})
        True
    """
    row = getattr(row_or_run, "row", row_or_run)  # a Run reads its record from the store
    if isinstance(row, dict):
        model_class = row.get("model_class")
    else:
        model_class = getattr(row, "model_class", None)
    return model_class == MODEL_CLASS


def export_run(run: Any, out_dir: str | os.PathLike[str], merged: bool = True) -> Path:
    """Write fine-tune ``run`` to ``out_dir`` (created) and return it: merged weights with
    tokenizer and chat template, or with ``merged=False`` the PEFT adapter alone. Uses the
    run's best (else last) checkpoint.

    Example::

        >>> out = export_run(run, "ada-model")  # doctest: +SKIP
        >>> AutoModelForCausalLM.from_pretrained(out)  # doctest: +SKIP
    """
    if not is_finetune_run(run):
        raise ValueError(
            f"run {getattr(run, 'name', run)!r} is not a fine-tune (made by finetune()); "
            "export applies to fine-tunes only"
        )
    out = Path(out_dir).expanduser().resolve()
    module = run.trained_module()
    peft_model = module.model
    out.mkdir(parents=True, exist_ok=True)
    if not merged:
        # the base as the run knew it: the directory's path or the hub id
        peft_model.peft_config["default"].base_model_name_or_path = module.base
        peft_model.save_pretrained(out)
        return out
    import torch

    model = peft_model.merge_and_unload()
    dtype = getattr(model.config, "dtype", None) or getattr(model.config, "torch_dtype", None)
    base_dtype = _dtype(_base_config_dtype(module.base)) or _dtype(dtype)
    if base_dtype is not None and base_dtype.is_floating_point and base_dtype != torch.float32:
        model = model.to(base_dtype)  # the base's own dtype, not the fp32 it was merged in
    model.config.name_or_path = str(out)
    model.save_pretrained(out)
    tok = module.load_tokenizer()
    tok.save_pretrained(out)  # the chat template goes with it
    return out


def _base_config_dtype(base: str) -> Any:
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(base)
    except Exception:  # the export still works in fp32
        return None
    return getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)


def _dtype(value: Any) -> Any:
    import torch

    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        found = getattr(torch, value.replace("torch.", ""), None)
        return found if isinstance(found, torch.dtype) else None
    return None
