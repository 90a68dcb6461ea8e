"""Validating OpenAI request bodies: every refusal is an :class:`OpenAIError` (a 4xx in
OpenAI's JSON error shape, naming the field as ``param``), never an exception that would
become a 500.

Written by hand rather than with pydantic models so the messages say what OpenAI's would
("'max_tokens' must be a positive integer") and unknown fields that OpenAI clients send
(``user``, ``frequency_penalty`` at 0, ...) are accepted and ignored, as OpenAI does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_STOP = 4  # OpenAI's limit on stop sequences


class OpenAIError(Exception):
    """A refused request: ``status`` and OpenAI's ``{"error": {...}}`` body.

    Example::

        >>> OpenAIError(400, "bad", param="n").body()["error"]["param"]
        'n'
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """OpenAI's error object.

        Example::

            >>> OpenAIError(404, "no model", code="model_not_found").body()["error"]["code"]
            'model_not_found'
        """
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass
class GenRequest:
    """A validated generation request (chat or completion)."""

    model: str
    kind: str  # "chat" or "completion"
    messages: list[dict[str, str]] | None = None
    prompt: str | list[int] | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False


def _bad(message: str, param: str | None) -> OpenAIError:
    return OpenAIError(400, message, param=param)


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise _bad(f"'{key}' must be a number from {lo:g} to {hi:g}; got {value!r}", key)
    return float(value)


def _int(body: dict[str, Any], key: str, lo: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"'{key}' must be an integer; got {value!r}", key)
    if lo is not None and value < lo:
        raise _bad(f"'{key}' must be at least {lo}; got {value}", key)
    return value


def _content(value: Any, where: str) -> str:
    """A message's content: a string, or a list of text parts (OpenAI's content parts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _bad(f"'{where}' parts must be text parts ({{'type': 'text', ...}})", where)
            if not isinstance(part.get("text"), str):
                raise _bad(f"'{where}' text parts need a string 'text'", where)
            texts.append(part["text"])
        return "".join(texts)
    if value is None:
        return ""
    raise _bad(f"'{where}' must be a string or a list of text parts; got {value!r}", where)


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise _bad("'messages' must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(f"'{where}' must be an object with 'role' and 'content'", where)
        role = message.get("role")
        if role not in ROLES:
            raise _bad(f"'{where}.role' must be one of {', '.join(ROLES)}; got {role!r}", where)
        out.append({"role": role, "content": _content(message.get("content"), where + ".content")})
    return out


def _prompt(value: Any) -> str | list[int]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if (
        isinstance(value, list)
        and value
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in value)
    ):
        return list(value)  # token ids, as OpenAI accepts
    if isinstance(value, list) and len(value) > 1 and all(isinstance(p, str) for p in value):
        raise _bad("only one prompt per request is supported; send one request each", "prompt")
    raise _bad("'prompt' must be a string (or a list of token ids)", "prompt")


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > MAX_STOP
        or not all(isinstance(s, str) and s for s in value)
    ):
        raise _bad(f"'stop' must be a string or a list of up to {MAX_STOP} strings", "stop")
    return list(value)


def parse_request(body: bytes, kind: str) -> GenRequest:
    """Validate a ``/v1/chat/completions`` (``kind="chat"``) or ``/v1/completions`` body.

    Example::

        >>> body = b'{"model": "m", "prompt": "Hi", "max_tokens": 4}'
        >>> parse_request(body, "completion").max_tokens
        4
        >>> parse_request(b'{"model": "m", "prompt": "Hi", "n": 2}', "completion")
        Traceback (most recent call last):
        ...
        jupyter_ext.deployment.textgen.schemas.OpenAIError: only n=1 is supported; got n=2
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"the body is not valid JSON: {exc}", None) from None
    if not isinstance(data, dict):
        raise _bad("the body must be a JSON object", None)
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required: one of the names GET /v1/models lists", "model")
    req = GenRequest(model=model, kind=kind)
    if kind == "chat":
        req.messages = _messages(data.get("messages"))
        req.max_tokens = _int(data, "max_completion_tokens", 1)
        if req.max_tokens is None:
            req.max_tokens = _int(data, "max_tokens", 1)
    else:
        if "prompt" not in data:
            raise _bad("'prompt' is required", "prompt")
        req.prompt = _prompt(data["prompt"])
        req.max_tokens = _int(data, "max_tokens", 1)
        for flag in ("echo",):
            if data.get(flag):
                raise _bad(f"'{flag}' is not supported by this server", flag)
    n = _int(data, "n", 1)
    if n not in (None, 1):
        # each choice would be one more generation; rather than batch them we refuse
        raise _bad(f"only n=1 is supported; got n={n}", "n")
    if data.get("logprobs") not in (None, False):
        raise _bad("'logprobs' is not supported by this server", "logprobs")
    req.temperature = _number(data, "temperature", 1.0, 0.0, 2.0)
    req.top_p = _number(data, "top_p", 1.0, 0.0, 1.0)
    if req.top_p == 0.0:
        raise _bad("'top_p' must be greater than 0", "top_p")
    req.stop = _stop(data.get("stop"))
    req.seed = _int(data, "seed")
    stream = data.get("stream")
    if stream not in (None, True, False):
        raise _bad(f"'stream' must be a boolean; got {stream!r}", "stream")
    req.stream = bool(stream)
    options = data.get("stream_options")
    if options is not None:
        if not req.stream:
            raise _bad("'stream_options' is only allowed when 'stream' is true", "stream_options")
        if not isinstance(options, dict) or not isinstance(
            options.get("include_usage", False), bool
        ):
            raise _bad("'stream_options' must be {'include_usage': bool}", "stream_options")
        req.include_usage = bool(options.get("include_usage"))
    return req
