"""The JSON part of a v2 (Open Inference Protocol) infer request, checked by hand.

:func:`.protocol.parse_infer` validates the structure here, then checks the request against
the model's spec. The checks are plain Python over the parsed JSON rather than pydantic
models: they run on every request, and validating a dict of five fields by hand costs a
fraction of building models for it. Every structural error is a
:class:`~.protocol.ProtocolError` saying what was expected, in the order a reader of the
request would find it (the input's name before its datatype before its shape, ...).

Standard library only, like the rest of the serving core a bundle carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .spec import ModelSpec, ProtocolError

_MISSING = object()


@dataclass
class InferInput:
    """The request's one input tensor; its values are in ``data`` or in the binary part."""

    name: str
    datatype: str
    shape: list[int]
    binary_data_size: int | None
    data: Any = _MISSING

    @property
    def has_data(self) -> bool:
        return self.data is not _MISSING


@dataclass
class InferBody:
    """The JSON part of an infer request (unknown fields are ignored)."""

    input: InferInput
    id: Any
    binary_output: bool


def _is_count(value: Any) -> bool:
    # JSON true is not a dimension, though Python calls bool an int
    return type(value) is int and value >= 0


def validate(doc: Any, spec: ModelSpec) -> InferBody:
    """The request's structure, validated (a :class:`ProtocolError` says what is wrong).

    Example::

        >>> validate({"inputs": []}, spec)  # doctest: +SKIP
        Traceback (most recent call last):
        ProtocolError: "inputs" must be a list with the model's one input tensor (a list of 0)
    """
    hint = infer_hint(spec)
    if not isinstance(doc, dict):
        raise ProtocolError(400, f"the body must be a JSON object like {hint}")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        got = "missing" if inputs is None else type(inputs).__name__
        if isinstance(inputs, list):
            got = f"a list of {len(inputs)}"
            if len(inputs) == 1:
                got = f"a list holding a {type(inputs[0]).__name__}"
        raise ProtocolError(
            400, f'"inputs" must be a list with the model\'s one input tensor ({got}); send {hint}'
        )
    tensor = _input(inputs[0], spec)
    binary = _request_binary(doc.get("parameters"))
    outputs = doc.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise ProtocolError(400, '"outputs" must be a list of {"name": ...} objects')
        for output in outputs:
            wanted = _output_binary(output, spec)
            if wanted is not None:
                binary = wanted
    return InferBody(tensor, doc.get("id"), binary)


def _input(tensor: dict[str, Any], spec: ModelSpec) -> InferInput:
    want = spec.input
    name = tensor.get("name")
    if not isinstance(name, str) or name != want.name:
        raise ProtocolError(
            400, f"unknown input {_clip(name)}: this model has one input named {want.name!r}"
        )
    datatype = tensor.get("datatype")
    if datatype != want.datatype:
        raise ProtocolError(
            422,
            f"input {want.name!r} has datatype {_clip(datatype)}; this model expects "
            f"{want.datatype!r}",
        )
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not shape or not all(_is_count(d) for d in shape):
        raise ProtocolError(
            400,
            f'input {want.name!r} needs "shape", a list of non-negative integers like '
            f"{want.shape_text()} (got {_clip(shape)})",
        )
    params = tensor.get("parameters")
    size = None
    if params is not None:
        size = params.get("binary_data_size") if isinstance(params, dict) else _MISSING
        if size is not None and not _is_count(size):
            raise ProtocolError(
                400,
                f'"parameters" of input {want.name!r} must be an object whose binary_data_size '
                f"is the byte count of its binary data (got {_clip(params)})",
            )
    return InferInput(name, datatype, shape, size, tensor.get("data", _MISSING))


def _request_binary(params: Any) -> bool:
    if params is None:
        return False
    value = params.get("binary_data_output", False) if isinstance(params, dict) else None
    if not isinstance(value, bool):
        raise ProtocolError(400, '"parameters" must be an object like {"binary_data_output": true}')
    return value


def _output_binary(output: Any, spec: ModelSpec) -> bool | None:
    """Whether this requested output asks for binary data (``None``: it does not say)."""
    name = output.get("name") if isinstance(output, dict) else output
    if not isinstance(output, dict) or name != spec.output.name:
        raise unknown_output(name, spec)
    params = output.get("parameters")
    if params is None:
        return None
    value = params.get("binary_data") if isinstance(params, dict) else "invalid"
    if value is not None and not isinstance(value, bool):
        raise ProtocolError(
            400, '"parameters" of an output must be an object like {"binary_data": true}'
        )
    return value


def _clip(value: Any, limit: int = 80) -> str:
    """``repr`` of a client's value, shortened: error messages must stay small."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unknown_output(name: Any, spec: ModelSpec) -> ProtocolError:
    """The answer to a request for an output this model does not have.

    Example::

        >>> unknown_output("y", spec).status  # doctest: +SKIP
        400
    """
    return ProtocolError(
        400, f"unknown output {_clip(name)}: this model has one output named {spec.output.name!r}"
    )


def infer_hint(spec: ModelSpec) -> str:
    """What a v2 infer body looks like for this model, for error messages.

    Example::

        >>> infer_hint(spec)  # doctest: +SKIP
        '{"inputs": [{"name": "input", "shape": [N, 13], "datatype": "FP32", "data": [...]}]}'
    """
    t = spec.input
    return (
        f'{{"inputs": [{{"name": "{t.name}", "shape": {t.shape_text()}, '
        f'"datatype": "{t.datatype}", "data": [...]}}]}}'
    )
