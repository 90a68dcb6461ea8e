"""Fine-tuning data: records in, token ids and loss masks out, checked before launch.

Three kinds of record, told apart by their keys:

- **chat** ``{"messages": [{"role", "content"}, ...]}``: formatted with the tokenizer's own
  chat template; the loss covers the assistant turns only. When the template marks them
  with ``{% generation %}`` (as ``build_tiny_llama``'s does) the mask is the template's
  own (``return_assistant_tokens_mask``). Otherwise it is computed by rendering prefixes:
  each assistant turn starts where the conversation before it ends (rendered with the
  generation prompt) and ends after its content and the special token that closes the
  turn; the tokens whose characters fall inside those spans are learned.
- **prompt/completion** ``{"prompt", "completion"}``: the loss covers the completion (and
  the end-of-sequence token that follows it, so the model learns to stop).
- **text** ``{"text"}`` or a plain string: the loss covers every token.

Data come as a list of such records, a pandas DataFrame with those columns, a
``datasets.Dataset``, or the path of a ``.jsonl`` file. A record that fits none of the
kinds is refused with its index and what was expected, before anything is launched.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

IGNORE = -100  # the label torch's cross-entropy skips

__all__ = [
    "IGNORE",
    "collate",
    "encode",
    "encode_all",
    "load_records",
    "record_kind",
    "sample_prompt",
    "split",
]

_EXPECTED = (
    'expected {"messages": [{"role": ..., "content": ...}, ...]} (chat), '
    '{"prompt": ..., "completion": ...}, {"text": ...} or a plain string'
)
_TEMPLATE_FIX = (
    "Set one before fine-tuning: `tokenizer.chat_template = '...'` and "
    "`tokenizer.save_pretrained(base)`, or pass `chat_template=` to finetune() "
    "(a Jinja template; mark assistant turns with {% generation %} ... {% endgeneration %} "
    "so the loss covers them exactly); or give the data as prompt/completion pairs."
)


class ChatTemplateMissing(ValueError):
    """Chat records were given but the tokenizer has no chat template."""


def load_records(data: Any) -> list[Any]:
    """The records of ``data``: a list (or other iterable) of records, a pandas DataFrame,
    a ``datasets.Dataset``, or a path to a ``.jsonl`` file (one JSON record a line).

    Example::

        >>> load_records(["a text", {"prompt": "2+2=", "completion": "4"}])
        ['a text', {'prompt': '2+2=', 'completion': '4'}]
    """
    if isinstance(data, (str, os.PathLike)):
        return _read_jsonl(Path(data))
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            # a column absent from a row reads as NaN: drop those, so a mixed frame works
            return [
                {k: v for k, v in row.items() if not _is_nan(v)}
                for row in data.to_dict(orient="records")
            ]
    except ImportError:  # pandas is a dependency; kept defensive for slim installs
        pass
    if type(data).__module__.startswith("datasets") and hasattr(data, "to_list"):
        return list(data.to_list())  # a datasets.Dataset: rows as dicts
    if isinstance(data, dict):
        raise ValueError(
            "data is a single dict: give a list of records, e.g. "
            '[{"messages": [...]}, ...], a DataFrame, a datasets.Dataset or a .jsonl path'
        )
    if not isinstance(data, Iterable):
        raise ValueError(
            f"data of type {type(data).__name__} is not a list of records, a DataFrame, "
            "a datasets.Dataset or a .jsonl path"
        )
    return list(data)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def _read_jsonl(path: Path) -> list[Any]:
    if not path.is_file():
        raise ValueError(f"data path {str(path)!r} is not a file (expected a .jsonl file)")
    if path.suffix.lower() not in (".jsonl", ".json"):
        raise ValueError(f"data path {str(path)!r}: expected a .jsonl file, one record a line")
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON record ({exc.msg})") from None
    return records


def record_kind(record: Any, index: int) -> str:
    """``"chat"``, ``"completion"`` or ``"text"``; a ValueError naming ``index`` and what
    was expected when ``record`` fits none.

    Example::

        >>> record_kind({"prompt": "Q", "completion": "A"}, 0)
        'completion'
    """
    if isinstance(record, str):
        return "text"
    if not isinstance(record, dict):
        raise ValueError(f"record {index}: got {type(record).__name__}; {_EXPECTED}")
    if "messages" in record:
        _check_messages(record["messages"], index)
        return "chat"
    if "prompt" in record or "completion" in record:
        for key in ("prompt", "completion"):
            if not isinstance(record.get(key), str):
                raise ValueError(
                    f"record {index}: {key!r} is {_what(record.get(key))}; a prompt/completion "
                    'record needs both as strings: {"prompt": "...", "completion": "..."}'
                )
        if not record["completion"]:
            raise ValueError(f"record {index}: the completion is empty; nothing to learn")
        return "completion"
    if "text" in record:
        if not isinstance(record["text"], str) or not record["text"]:
            raise ValueError(f"record {index}: 'text' is {_what(record['text'])}; expected text")
        return "text"
    raise ValueError(f"record {index}: keys {sorted(record)}; {_EXPECTED}")


def _what(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str) and not value:
        return "empty"
    return f"a {type(value).__name__}"


def _check_messages(messages: Any, index: int) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(
            f"record {index}: 'messages' is {_what(messages) if messages else 'empty'}; "
            'expected a list like [{"role": "user", "content": "..."}, '
            '{"role": "assistant", "content": "..."}]'
        )
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError(
                f"record {index}, message {j}: expected a dict with a 'role' string and "
                f"'content', got {m!r:.80}"
            )
        if not isinstance(m.get("content"), str):
            raise ValueError(
                f"record {index}, message {j} ({m['role']}): 'content' is "
                f"{_what(m.get('content'))}; expected text"
            )
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(
            f"record {index}: no assistant message, so nothing to learn; a chat record "
            "needs at least one {'role': 'assistant', 'content': ...} turn"
        )


def has_generation_markers(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template marks assistant turns (``{% generation %}``)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates: the default one formats chats
        template = template.get("default")
    return isinstance(template, str) and "generation" in template and "endgeneration" in template


def _require_template(tokenizer: Any) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateMissing(
            f"the tokenizer of this base ({getattr(tokenizer, 'name_or_path', '?')}) has no "
            f"chat template, so chat records cannot be formatted. {_TEMPLATE_FIX}"
        )


def encode(record: Any, tokenizer: Any, max_length: int, index: int = 0) -> dict[str, list[int]]:
    """``{"input_ids", "labels"}`` of one record: labels are the ids where the loss counts
    and ``IGNORE`` (-100) elsewhere; truncated to ``max_length`` tokens. A record left with
    nothing to learn after truncation is refused (its index, its length).

    Example::

        >>> ex = encode({"prompt": "Q: 2+2?", "completion": " 4"}, tok, 64)  # doctest: +SKIP
        >>> ex["labels"][:3]  # doctest: +SKIP
        [-100, -100, -100]
    """
    kind = record_kind(record, index)
    if kind == "chat":
        ids, mask = _encode_chat(record["messages"], tokenizer)
    elif kind == "completion":
        prompt = tokenizer(record["prompt"], add_special_tokens=True)["input_ids"]
        completion = tokenizer(record["completion"], add_special_tokens=False)["input_ids"]
        completion = completion + _eos(tokenizer)
        ids, mask = prompt + completion, [0] * len(prompt) + [1] * len(completion)
    else:
        text = record if isinstance(record, str) else record["text"]
        ids = tokenizer(text, add_special_tokens=True)["input_ids"] + _eos(tokenizer)
        mask = [1] * len(ids)
    ids, mask = ids[:max_length], mask[:max_length]
    # the label of the first token is never predicted (nothing comes before it)
    if sum(mask[1:]) == 0:
        raise ValueError(
            f"record {index}: nothing left to learn within max_length={max_length} tokens "
            f"(the part without loss alone takes {mask.index(1) if 1 in mask else len(ids)}+ "
            "tokens); raise max_length or shorten the record"
        )
    labels = [t if m else IGNORE for t, m in zip(ids, mask, strict=True)]
    return {"input_ids": list(ids), "labels": labels}


def _eos(tokenizer: Any) -> list[int]:
    eos = tokenizer.eos_token_id
    return [] if eos is None else [int(eos)]


def _encode_chat(messages: Sequence[dict[str, Any]], tokenizer: Any) -> tuple[list[int], list[int]]:
    _require_template(tokenizer)
    messages = list(messages)
    if has_generation_markers(tokenizer):
        out = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        return list(out["input_ids"]), [int(m) for m in out["assistant_masks"]]
    # No markers: find each assistant turn's characters by rendering prefixes, then mark
    # the tokens inside them (token offsets of the whole rendering keep merges intact).
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(
            messages[:i], tokenize=False, add_generation_prompt=True
        ) if i else ""  # fmt: skip
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not full.startswith(through) or not through.startswith(before):
            raise ValueError(
                "this chat template renders a conversation differently from its prefixes, "
                "so assistant turns cannot be located; add {% generation %} markers to it"
            )
        spans.append((len(before), _turn_end(tokenizer, through, len(before), m["content"])))
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(a <= s < b for a, b in spans) and e > s) for s, e in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask


def _turn_end(tokenizer: Any, rendered: str, start: int, content: str) -> int:
    """Where an assistant turn's learned text ends in ``rendered``: after its content and
    the special token that closes the turn (``<|im_end|>``, ``<|eot_id|>``, ...), not the
    newline a template puts between turns, which the model never has to write."""
    at = rendered.find(content, start) if content else start
    if at < 0:
        return len(rendered)
    end = at + len(content)
    rest = rendered[end:]
    closers = sorted(getattr(tokenizer, "all_special_tokens", []) or [], key=len, reverse=True)
    for token in closers:
        if token and rest.startswith(token):
            return end + len(token)
    return end


def encode_all(records: Sequence[Any], tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
    """Encode every record (see :func:`encode`); the first that does not fit is refused.

    Example::

        >>> examples = encode_all(load_records("facts.jsonl"), tok, 512)  # doctest: +SKIP
    """
    if not records:
        raise ValueError("no records: give at least one chat record, prompt/completion or text")
    return [encode(r, tokenizer, max_length, i) for i, r in enumerate(records)]


def split(records: list[Any], val_fraction: float, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """Hold out ``val_fraction`` of ``records`` (at least one, when there are two or more)
    for validation; the same records for the same input every time.

    Example::

        >>> train, val = split(list(range(10)), 0.2)
        >>> len(train), len(val)
        (8, 2)
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: expected a fraction in [0, 1)")
    n = len(records)
    k = 0 if val_fraction == 0 or n < 2 else max(1, round(n * val_fraction))
    order = list(range(n))
    random.Random(seed).shuffle(order)
    held = set(order[:k])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


def sample_prompt(record: Any, tokenizer: Any) -> tuple[str, str]:
    """``(shown, model_input)`` for a sample generation from a record: a chat's messages
    before its last assistant turn (formatted with the generation prompt), a prompt, or
    the first half of a text's words.

    Example::

        >>> sample_prompt({"prompt": "Q: 2+2?", "completion": " 4"}, tok)  # doctest: +SKIP
        ('Q: 2+2?', 'Q: 2+2?')
    """
    if isinstance(record, (list, tuple)):  # sample_prompts= given as a list of messages
        record = {"messages": [*record, {"role": "assistant", "content": ""}]}
    if isinstance(record, dict) and "messages" in record:
        messages = list(record["messages"])
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        context = messages[:last]
        text = tokenizer.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
        users = [m["content"] for m in context if m["role"] == "user"]
        return (users[-1] if users else text), text
    if isinstance(record, dict) and "prompt" in record:
        return record["prompt"], record["prompt"]
    text = record if isinstance(record, str) else record["text"]
    words = text.split(" ")
    head = " ".join(words[: max(1, len(words) // 2)])
    return head, head


def collate(examples: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """A right-padded batch: ``input_ids``, ``attention_mask`` and ``labels`` (-100 on pads).

    Example::

        >>> batch = collate([{"input_ids": [5, 6], "labels": [-100, 6]}], pad_id=0)
        >>> batch["labels"].tolist()
        [[-100, 6]]
    """
    import torch

    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        attention[row, :n] = 1
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}
