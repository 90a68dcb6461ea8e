"""The JSON part of a v2 (Open Inference Protocol) infer request, as pydantic models.

:func:`.protocol.parse_infer` validates the structure here, then checks the request against
the model's spec. A structural error becomes a :class:`~.protocol.ProtocolError` saying
what was expected (:func:`explain`), never pydantic's own report: clients of this protocol
read ``{"error": "..."}``. The fields are declared in the order their errors are reported
(the input's name before its datatype before its shape, ...), because pydantic lists
errors in field order and the first one is the one answered.

Kept apart from :mod:`.protocol` so a kernel that only talks to servers does not import
pydantic; servers and bundles have it (FastAPI and LitServe depend on it).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError

from .spec import ModelSpec, ProtocolError

NonNegative = Annotated[int, Field(strict=True, ge=0)]  # strict: true is not a dimension


class TensorParameters(BaseModel):
    """An input's ``parameters``: Triton's binary tensor extension."""

    binary_data_size: NonNegative | None = None


class InputTensor(BaseModel):
    """One input tensor; its values are in ``data`` or in the binary part of the body."""

    name: str
    datatype: str
    shape: Annotated[list[NonNegative], Field(min_length=1)]
    parameters: TensorParameters | None = None
    data: Any = None  # checked against the spec's dtype and shape by protocol.to_array


class OutputParameters(BaseModel):
    binary_data: bool | None = None


class RequestedOutput(BaseModel):
    name: str
    parameters: OutputParameters | None = None


class RequestParameters(BaseModel):
    binary_data_output: bool = False


class InferBody(BaseModel):
    """The JSON part of an infer request (unknown fields are ignored)."""

    inputs: Annotated[list[InputTensor], Field(min_length=1, max_length=1)]
    outputs: list[RequestedOutput] | None = None
    parameters: RequestParameters | None = None
    id: Any = None


def validate(doc: Any, spec: ModelSpec) -> InferBody:
    """The request's structure, validated (a :class:`ProtocolError` says what is wrong).

    Example::

        >>> validate({"inputs": []}, spec)  # doctest: +SKIP
        Traceback (most recent call last):
        ProtocolError: "inputs" must be a list with the model's one input tensor (a list of 0)
    """
    try:
        return InferBody.model_validate(doc)
    except ValidationError as exc:
        raise explain(exc.errors()[0], doc, spec) from None


def explain(error: Any, doc: Any, spec: ModelSpec) -> ProtocolError:
    """The protocol's answer to one pydantic error on the request ``doc``.

    Example::

        >>> explain({"loc": ("inputs", 0, "shape"), "type": "missing"}, doc, spec)  # doctest: +SKIP
    """
    loc = tuple(error["loc"])
    hint = infer_hint(spec)
    if not isinstance(doc, dict):
        return ProtocolError(400, f"the body must be a JSON object like {hint}")
    if loc[0] == "inputs" and len(loc) > 2:
        return _input_error(loc[2], doc["inputs"][0], spec)
    if loc[0] == "inputs":
        inputs = doc.get("inputs")
        got = "missing" if inputs is None else type(inputs).__name__
        if isinstance(inputs, list):
            got = f"a list of {len(inputs)}"
        return ProtocolError(
            400, f'"inputs" must be a list with the model\'s one input tensor ({got}); send {hint}'
        )
    if loc[0] == "outputs" and len(loc) > 1:
        output = doc["outputs"][loc[1]]
        if len(loc) > 2 and loc[2] == "parameters":
            return ProtocolError(
                400, '"parameters" of an output must be an object like {"binary_data": true}'
            )
        name = output.get("name") if isinstance(output, dict) else output
        return unknown_output(name, spec)
    if loc[0] == "outputs":
        return ProtocolError(400, '"outputs" must be a list of {"name": ...} objects')
    if loc[0] == "parameters":
        return ProtocolError(
            400, '"parameters" must be an object like {"binary_data_output": true}'
        )
    return ProtocolError(400, f"the request does not follow the v2 protocol ({error['msg']})")


def _input_error(field: str, tensor: dict[str, Any], spec: ModelSpec) -> ProtocolError:
    want = spec.input
    if field == "name":
        return ProtocolError(
            400,
            f"unknown input {tensor.get('name')!r}: this model has one input named {want.name!r}",
        )
    if field == "datatype":
        return ProtocolError(
            422,
            f"input {want.name!r} has datatype {tensor.get('datatype')!r}; this model expects "
            f"{want.datatype!r}",
        )
    if field == "shape":
        return ProtocolError(
            400,
            f'input {want.name!r} needs "shape", a list of non-negative integers like '
            f"{want.shape_text()} (got {tensor.get('shape')!r})",
        )
    return ProtocolError(
        400,
        f'"parameters" of input {want.name!r} must be an object whose binary_data_size is the '
        f"byte count of its binary data (got {tensor.get('parameters')!r})",
    )


def unknown_output(name: Any, spec: ModelSpec) -> ProtocolError:
    """The answer to a request for an output this model does not have.

    Example::

        >>> unknown_output("y", spec).status  # doctest: +SKIP
        400
    """
    return ProtocolError(
        400, f"unknown output {name!r}: this model has one output named {spec.output.name!r}"
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
