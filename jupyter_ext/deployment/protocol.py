"""The serving protocol: parse and validate requests, encode responses.

Two dialects over one model with one tensor input and one tensor output:

- ``POST /predict`` with ``{"inputs": <nested list>}`` answers ``{"outputs": <nested list>}``.
  A batch ``[N, 13]`` or a single example ``[13]`` (answered unbatched) is accepted.
- The Open Inference Protocol (KServe v2) REST API, with Triton's binary tensor extension
  (``Inference-Header-Content-Length``), so ``tritonclient.http`` works with its defaults.

Every engine (the FastAPI app, the LitServe gate) and every bundle uses this module, so it
imports only the standard library and numpy (the v2 infer body's pydantic models, in
:mod:`.v2_infer`, load with the first infer request). Bad requests raise :class:`ProtocolError`
carrying the HTTP status and a message that says what was expected; the body of an error
response is ``{"error": message}`` (the v2 protocol's error shape).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .spec import DATATYPES, ModelSpec, ProtocolError, TensorSpec, datatype_of

__all__ = ["DATATYPES", "ModelSpec", "ProtocolError", "TensorSpec", "datatype_of"]

API_KEY_HEADER = "x-api-key"
SERVER_NAME = "jupyter-ext"
PROTOCOL_VERSION = "2"


# -- authentication -------------------------------------------------------------------------


def hash_key(key: str) -> str:
    """The sha256 of an API key: servers and bundles keep this, never the key itself.

    Example::

        >>> len(hash_key("s3cret"))
        64
    """
    return hashlib.sha256(key.encode()).hexdigest()


def check_api_key(get_header: Callable[[str], str | None], key_hash: str | None) -> None:
    """Refuse a request without the API key (401) or with a wrong one (403).

    ``get_header`` looks a header up by lower-case name. The key goes in ``X-API-Key``
    (LitServe's header) or ``Authorization: Bearer KEY``.

    Example::

        >>> check_api_key({"x-api-key": "s3cret"}.get, hash_key("s3cret"))  # accepted
    """
    if key_hash is None:
        return
    key = get_header(API_KEY_HEADER)
    if key is None:
        auth = get_header("authorization") or ""
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
    if not key:
        raise ProtocolError(
            401,
            "this server requires an API key: send it in the X-API-Key header "
            "(or as Authorization: Bearer KEY)",
            {"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(hash_key(key), key_hash):
        raise ProtocolError(403, "the API key is not valid for this server")


# -- request bodies -------------------------------------------------------------------------


async def read_body(
    chunks: AsyncIterator[bytes],
    content_length: str | None,
    content_encoding: str | None,
    limit: int,
) -> bytes:
    """Collect a request body of at most ``limit`` bytes (413 past it), decompressed.

    Example::

        >>> body = await read_body(request.stream(), None, None, 1 << 20)  # doctest: +SKIP
    """
    too_big = ProtocolError(413, f"the request body exceeds the limit of {limit} bytes")
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise too_big  # refuse before reading a byte of it
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise too_big
        parts.append(chunk)
    return decode_body(b"".join(parts), content_encoding, limit)


def decode_body(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo a gzip/deflate ``Content-Encoding`` (as tritonclient may send), within ``limit``.

    Example::

        >>> import gzip
        >>> decode_body(gzip.compress(b"{}"), "gzip", 100)
        b'{}'
    """
    if not content_encoding or content_encoding.lower() == "identity":
        return body
    enc = content_encoding.lower()
    if enc not in ("gzip", "deflate"):
        raise ProtocolError(415, f"Content-Encoding {enc!r} is not supported; use gzip or deflate")
    d = zlib.decompressobj(wbits=31 if enc == "gzip" else 15)
    try:
        # max_length bounds what a small compressed body may expand to
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(400, f"the body is not valid {enc} data: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise ProtocolError(413, f"the decompressed body exceeds the limit of {limit} bytes")
    return out


def _load_json(body: bytes, hint: str) -> Any:
    if not body:
        raise ProtocolError(400, f"the request body is empty; send JSON like {hint}")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(400, f"the body is not valid JSON ({exc}); send {hint}") from None


def _kind_name(arr: np.ndarray) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers"}.get(
        arr.dtype.kind, "values that are not numbers"
    )


def to_array(value: Any, spec: TensorSpec, what: str) -> np.ndarray:
    """Turn a JSON nested list into an array of the model's dtype, or say what is wrong.

    Example::

        >>> to_array([[1, 2]], TensorSpec("input", "FP32", (-1, 2)), '"inputs"').dtype
        dtype('float32')
    """
    if not isinstance(value, list):
        raise ProtocolError(
            422,
            f"{what} must be a nested list of numbers of shape {spec.shape_text()}, "
            f"got {type(value).__name__}",
        )
    try:
        arr = np.asarray(value)
    except ValueError:
        raise ProtocolError(
            422,
            f"{what} is a ragged nested list; expected a rectangular array of shape "
            f"{spec.shape_text()}",
        ) from None
    want = spec.dtype
    kind = arr.dtype.kind
    if arr.size == 0 and kind == "f":
        return arr.astype(want)  # an empty list parses as float64; the shape check speaks
    ok = (
        (want.kind == "b" and kind == "b")
        or (want.kind in "iu" and kind in "iu")
        or (want.kind == "f" and kind in "iuf")
    )
    if not ok:
        expected = {"b": "booleans (true/false)", "i": "integers", "u": "integers"}.get(
            want.kind, "numbers"
        )
        raise ProtocolError(
            422,
            f"{what} has {_kind_name(arr)} (or a null, string or out-of-range value); "
            f"this model expects {expected} ({spec.datatype})",
        )
    return arr.astype(want, copy=False)


def check_shape(
    arr: np.ndarray, spec: TensorSpec, what: str, allow_single: bool
) -> tuple[np.ndarray, bool]:
    """Check ``arr`` against the spec; a single example (no batch dim) becomes a batch of one.

    Returns the batched array and whether the request was batched.

    Example::

        >>> spec = TensorSpec("input", "FP32", (-1, 2))
        >>> check_shape(np.zeros(2), spec, "inputs", allow_single=True)[0].shape
        (1, 2)
    """
    want = spec.shape
    if arr.size == 0:
        raise ProtocolError(
            422, f"{what} is empty (an empty batch); send at least one row of {spec.shape_text()}"
        )
    if arr.ndim == len(want) and all(w in (-1, a) for w, a in zip(want, arr.shape, strict=True)):
        return arr, True
    if (
        allow_single
        and arr.ndim == len(want) - 1
        and all(w in (-1, a) for w, a in zip(want[1:], arr.shape, strict=True))
    ):
        return arr[None], False
    single = f" or one example of shape {spec.shape_text(want[1:])}" if allow_single else ""
    raise ProtocolError(
        422,
        f"{what} has shape {list(arr.shape)}; this model expects {spec.shape_text()} "
        f"(N rows of {spec.shape_text(want[1:])}){single}",
    )


# -- POST /predict --------------------------------------------------------------------------


def predict_hint(spec: ModelSpec) -> str:
    """What a ``/predict`` body looks like for this model, for error messages.

    Example::

        >>> predict_hint(ModelSpec("m", TensorSpec("input", "FP32", (-1, 2)),
        ...                        TensorSpec("output", "FP32", (-1, 1)), "x"))
        '{"inputs": <nested list of shape [N, 2]>}'
    """
    return '{"inputs": <nested list of shape ' + spec.input.shape_text() + ">}"


def parse_predict(body: bytes, spec: ModelSpec) -> tuple[np.ndarray, bool]:
    """Parse a ``/predict`` body into a batched input array and whether it was batched.

    Example::

        >>> spec = ModelSpec("m", TensorSpec("input", "FP32", (-1, 2)),
        ...                  TensorSpec("output", "FP32", (-1, 1)), "x")
        >>> x, batched = parse_predict(b'{"inputs": [1, 2]}', spec)
        >>> x.shape, x.dtype, batched
        ((1, 2), dtype('float32'), False)
    """
    hint = predict_hint(spec)
    doc = _load_json(body, hint)
    if not isinstance(doc, dict):
        raise ProtocolError(400, f"the body must be a JSON object like {hint}")
    if "inputs" not in doc:
        raise ProtocolError(400, f'missing field "inputs": send {hint} (got fields {sorted(doc)})')
    arr = to_array(doc["inputs"], spec.input, '"inputs"')
    return check_shape(arr, spec.input, '"inputs"', allow_single=True)


def encode_predict(output: np.ndarray, batched: bool) -> bytes:
    """The ``/predict`` response body for a batched output array.

    Example::

        >>> encode_predict(np.array([[0.5]]), batched=False)
        b'{"outputs": [0.5]}'
    """
    out = output if batched else output[0]
    return json.dumps({"outputs": np.asarray(out).tolist()}).encode()


# -- Open Inference Protocol: POST /v2/models/{name}/infer ----------------------------------


@dataclass
class InferRequest:
    """A parsed v2 inference request."""

    array: np.ndarray
    id: str | None = None
    binary_output: bool = False
    output_params: dict[str, Any] = field(default_factory=dict)


def parse_infer(body: bytes, header_length: str | None, spec: ModelSpec) -> InferRequest:
    """Parse a v2 infer body (JSON, or JSON + binary tensors) into an :class:`InferRequest`.

    The structure is validated by :mod:`.v2_infer`'s pydantic models; the tensor is then
    checked against ``spec`` (name, datatype, shape, values).

    Example::

        >>> spec = ModelSpec("m", TensorSpec("input", "FP32", (-1, 2)),
        ...                  TensorSpec("output", "FP32", (-1, 1)), "x")
        >>> body = b'{"inputs": [{"name": "input", "shape": [1, 2], "datatype": "FP32",'
        >>> body += b' "data": [1, 2]}]}'
        >>> parse_infer(body, None, spec).array
        array([[1., 2.]], dtype=float32)
    """
    from . import v2_infer

    json_part, binary = _split_body(body, header_length)
    req = v2_infer.validate(_load_json(json_part, v2_infer.infer_hint(spec)), spec)
    tensor = req.inputs[0]
    _check_input(tensor, spec)
    if tensor.parameters is not None and tensor.parameters.binary_data_size is not None:
        arr = _binary_input(tensor, binary, header_length is not None, spec)
    else:
        arr = _json_input(tensor, spec)
    arr, _ = check_shape(arr, spec.input, f"input {spec.input.name!r}", allow_single=False)
    rid = req.id
    return InferRequest(arr, None if rid is None else str(rid), _binary_output(req, spec))


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """``(json, binary)``: the parts of a body with Triton's binary tensor extension."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise ProtocolError(
            400,
            f"Inference-Header-Content-Length {header_length!r} must be the byte length of "
            f"the JSON part of the body (0..{len(body)})",
        )
    return body[:n], body[n:]


def _check_input(tensor: Any, spec: ModelSpec) -> None:
    want = spec.input
    if tensor.name != want.name:
        raise ProtocolError(
            400, f"unknown input {tensor.name!r}: this model has one input named {want.name!r}"
        )
    if tensor.datatype != want.datatype:
        raise ProtocolError(
            422,
            f"input {want.name!r} has datatype {tensor.datatype!r}; this model expects "
            f"{want.datatype!r}",
        )


def _binary_input(tensor: Any, binary: bytes, has_header: bool, spec: ModelSpec) -> np.ndarray:
    want = spec.input
    if not has_header:
        raise ProtocolError(
            400, "binary_data_size was given without an Inference-Header-Content-Length header"
        )
    size = tensor.parameters.binary_data_size
    expected = math.prod(tensor.shape) * want.dtype.itemsize
    if size != expected or len(binary) != size:
        raise ProtocolError(
            400,
            f"binary data of input {want.name!r} must be {expected} bytes for shape "
            f"{tensor.shape} of {want.datatype} (binary_data_size {size}, {len(binary)} bytes "
            "received)",
        )
    return np.frombuffer(binary, dtype=want.dtype).reshape(tensor.shape)


def _json_input(tensor: Any, spec: ModelSpec) -> np.ndarray:
    from .v2_infer import infer_hint

    want = spec.input
    if "data" not in tensor.model_fields_set:
        raise ProtocolError(400, f'input {want.name!r} has no "data"; send {infer_hint(spec)}')
    arr = to_array(tensor.data, want, f'"data" of input {want.name!r}')
    count = math.prod(tensor.shape)
    if arr.size != count:
        raise ProtocolError(
            422,
            f'"data" of input {want.name!r} has {arr.size} values but "shape" {tensor.shape} '
            f"needs {count}",
        )
    return arr.reshape(tensor.shape)


def _binary_output(req: Any, spec: ModelSpec) -> bool:
    """Whether the answer carries the output as binary (asked for by the request or by
    the output)."""
    from .v2_infer import unknown_output

    binary = bool(req.parameters and req.parameters.binary_data_output)
    for output in req.outputs or ():
        if output.name != spec.output.name:
            raise unknown_output(output.name, spec)
        if output.parameters is not None and output.parameters.binary_data is not None:
            binary = output.parameters.binary_data
    return binary


def encode_infer(output: np.ndarray, req: InferRequest, spec: ModelSpec) -> tuple[bytes, dict]:
    """The v2 infer response: ``(body, headers)``; binary when the request asked for it.

    Example::

        >>> body, headers = encode_infer(y, InferRequest(x), spec)  # doctest: +SKIP
    """
    out = np.ascontiguousarray(output, dtype=spec.output.dtype)
    desc: dict[str, Any] = {
        "name": spec.output.name,
        "datatype": spec.output.datatype,
        "shape": list(out.shape),
    }
    doc: dict[str, Any] = {"model_name": spec.name, "model_version": spec.version}
    if req.id is not None:
        doc["id"] = req.id
    doc["outputs"] = [desc]
    if req.binary_output:
        raw = out.tobytes()
        desc["parameters"] = {"binary_data_size": len(raw)}
        head = json.dumps(doc).encode()
        return head + raw, {
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": "application/octet-stream",
        }
    desc["data"] = out.ravel().tolist()
    return json.dumps(doc).encode(), {"Content-Type": "application/json"}


def server_metadata(version: str) -> dict[str, Any]:
    """The v2 server metadata response (``GET /v2``).

    Example::

        >>> server_metadata("1")["extensions"]
        ['binary_tensor_data']
    """
    return {"name": SERVER_NAME, "version": version, "extensions": ["binary_tensor_data"]}


def check_model(spec: ModelSpec, name: str, version: str | None = None) -> None:
    """404 unless the path names this model (and its one version).

    Example::

        >>> check_model(spec, "mlp", "1")  # doctest: +SKIP
    """
    if name != spec.name:
        raise ProtocolError(404, f"unknown model {name!r}: this server serves {spec.name!r}")
    if version is not None and version != spec.version:
        raise ProtocolError(
            404,
            f"unknown version {version!r} of {spec.name!r}: the only version is {spec.version!r}",
        )
