"""The serving protocol: parse and validate requests, encode responses.

Two dialects over one model with one tensor input and one tensor output:

- ``POST /predict`` with ``{"inputs": <nested list>}`` answers ``{"outputs": <nested list>}``.
  A batch ``[N, 13]`` or a single example ``[13]`` (answered unbatched) is accepted.
- The Open Inference Protocol (KServe v2) REST API, with Triton's binary tensor extension
  (``Inference-Header-Content-Length``), so ``tritonclient.http`` works with its defaults.

Every engine (the FastAPI app, the LitServe gate) and every bundle uses this module, so it
imports only the standard library, numpy and orjson. Bad requests raise :class:`ProtocolError`
carrying the HTTP status and a message that says what was expected; the body of an error
response is ``{"error": message}`` (the v2 protocol's error shape).

JSON is strict both ways: ``NaN``/``Infinity`` literals, numbers that overflow a double and
nesting deeper than 1,024 levels are refused (orjson's parser), input values must be finite
and within the range of the model's datatype, and non-finite *outputs* are written as
``null`` (JSON has no NaN) with a ``Non-Finite-Outputs: <count>`` header saying how many, so a
client can tell a null from a number. Binary tensors carry any IEEE value as it is.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from .spec import DATATYPES, ModelSpec, ProtocolError, TensorSpec, datatype_of

__all__ = ["DATATYPES", "ModelSpec", "ProtocolError", "TensorSpec", "datatype_of"]

API_KEY_HEADER = "x-api-key"
NONFINITE_HEADER = "Non-Finite-Outputs"
# What a JSON body may be labelled: JSON, or the label a client puts on a body it was given
# as text (fetch: text/plain; curl -d and urllib: form-urlencoded), or none at all (requests
# and httpx with bytes). A label naming another format (multipart, XML, CSV, an image...)
# is refused: that client is sending something else.
_JSON_TYPES = (
    "application/json",
    "text/json",
    "text/plain",
    "application/x-www-form-urlencoded",
)
_BINARY_TYPE = "application/octet-stream"
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


def check_content_type(content_type: str | None, binary: bool) -> None:
    """415 when the body is labelled as another format than JSON (``binary`` routes also
    take octet-stream, for binary tensors).

    A missing Content-Type is accepted, and so are text/plain and form-urlencoded: they
    are what fetch, curl -d and urllib put on a body they were given as text.

    Example::

        >>> check_content_type("application/json; charset=utf-8", binary=False)  # accepted
    """
    if not content_type:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or media.endswith("+json") or (binary and media == _BINARY_TYPE):
        return
    allowed = "application/json" + (f" (or {_BINARY_TYPE} with binary tensors)" if binary else "")
    raise ProtocolError(
        415,
        f"Content-Type {_clip(content_type)} is not accepted; send the body as {allowed}, "
        "e.g. curl -H 'Content-Type: application/json'",
    )


class BodyWatch:
    """Ends the reading of request bodies that stall for more than ``timeout`` seconds.

    One watchdog task for all requests rather than a timer per request: an asyncio timeout
    costs ~14 us, more than reading and parsing a small body. A read that makes no progress
    for ``timeout`` (checked every quarter of it) is cancelled and answered 408.

    Example::

        >>> watch = BodyWatch(30.0)
        >>> body = await read_body(chunks, None, None, 1 << 20, watch)  # doctest: +SKIP
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._reads: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._watchdog: asyncio.Task | None = None

    def begin(self, task: asyncio.Task) -> None:
        loop = asyncio.get_running_loop()
        self._reads[task] = loop.time()
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = loop.create_task(self._watch())

    def touch(self, task: asyncio.Task) -> None:
        self._reads[task] = asyncio.get_running_loop().time()

    def end(self, task: asyncio.Task) -> bool:
        """Stop watching ``task``; True if it was cancelled for stalling."""
        self._reads.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._reads:
            await asyncio.sleep(self.timeout / 4)
            now = loop.time()
            for task, last in list(self._reads.items()):
                if now - last > self.timeout and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()


async def read_body(
    chunks: AsyncIterator[bytes],
    content_length: str | None,
    content_encoding: str | None,
    limit: int,
    watch: BodyWatch | None = None,
) -> bytes:
    """Collect a request body of at most ``limit`` bytes (413 past it), decompressed.

    ``watch``: answers 408 when the body pauses for longer than its timeout between two
    reads (like nginx's ``client_body_timeout``), so a client that stops sending cannot hold
    a request open.

    Example::

        >>> body = await read_body(request.stream(), None, None, 1 << 20)  # doctest: +SKIP
    """
    too_big = ProtocolError(413, f"the request body exceeds the limit of {limit} bytes")
    if content_length and content_length.isdigit() and int(content_length) > limit:
        raise too_big  # refuse before reading a byte of it
    parts: list[bytes] = []
    size = 0
    task = asyncio.current_task() if watch is not None else None
    if watch is not None and task is not None:
        watch.begin(task)
    try:
        async for chunk in chunks:
            if watch is not None and task is not None:
                watch.touch(task)
            size += len(chunk)
            if size > limit:
                raise too_big
            parts.append(chunk)
    except asyncio.CancelledError:
        if watch is not None and task is not None and watch.end(task):
            task.uncancel()  # ours, not a shutdown's: the request goes on to its 408
            raise body_timeout(watch.timeout, size) from None
        raise
    finally:
        if watch is not None and task is not None:
            watch.end(task)
    return decode_body(b"".join(parts), content_encoding, limit)


def body_timeout(timeout: float, received: int) -> ProtocolError:
    """The 408 for a body that did not arrive in time (the connection is then closed).

    Example::

        >>> body_timeout(30.0, 12).status
        408
    """
    return ProtocolError(
        408,
        f"the request body stopped arriving: nothing for {timeout:g} s after {received} "
        "bytes; send it whole, with its Content-Length",
        {"Connection": "close"},
    )


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


def _clip(value: Any, limit: int = 80) -> str:
    """``repr`` of a client's value, shortened: error messages must stay small."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_json(body: bytes, hint: str) -> Any:
    if not body:
        raise ProtocolError(400, f"the request body is empty; send JSON like {hint}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        why = str(exc)
        if "depth limit" in why:
            why = "nested deeper than 1024 levels"
        elif "infinity" in why:
            why = f"{why}: a number beyond the range of a double"
        raise ProtocolError(
            400, f"the body is not valid JSON ({why}); send {hint} (NaN and Infinity are not JSON)"
        ) from None


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
    want = spec.dtype
    try:
        arr = np.asarray(value)
    except ValueError:
        raise ProtocolError(
            422,
            f"{what} is a ragged nested list (or nested deeper than {spec.shape_text()}); "
            f"expected a rectangular array of shape {spec.shape_text()}",
        ) from None
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
    return check_values(arr, spec, what)


def check_values(arr: np.ndarray, spec: TensorSpec, what: str) -> np.ndarray:
    """``arr`` as the model's dtype, refusing what the cast would change: values outside
    the datatype's range (they would wrap or become inf) and non-finite values.

    Example::

        >>> check_values(np.array([1.0]), TensorSpec("input", "FP32", (-1,)), "inputs").dtype
        dtype('float32')
    """
    want = spec.dtype
    if want.kind in "iu" and arr.dtype.kind in "iu" and arr.size:
        info = np.iinfo(want)
        if arr.min() < info.min or arr.max() > info.max:
            raise ProtocolError(
                422,
                f"{what} has a value outside the range of {spec.datatype} ({info.min}..{info.max})",
            )
    out = arr.astype(want, copy=False)
    if want.kind == "f" and not all_finite(out):
        bad = int(np.flatnonzero(~np.isfinite(out.ravel()))[0])
        raise ProtocolError(
            422,
            f"{what} has a value that is not a finite {spec.datatype} number (flat index {bad}: "
            f"NaN, an infinity, or beyond {spec.datatype}'s range of +-{np.finfo(want).max:.3g})",
        )
    return out


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


def all_finite(arr: np.ndarray) -> bool:
    """Whether every value of a float array is finite.

    Example::

        >>> all_finite(np.array([1.0, 2.0])), all_finite(np.array([1.0, np.nan]))
        (True, False)
    """
    return bool(np.isfinite(arr).all())


def _json_ready(out: np.ndarray) -> tuple[Any, dict[str, str]]:
    """The array as orjson writes it, and the header counting its non-finite values."""
    out = np.ascontiguousarray(out)  # orjson serializes C-contiguous arrays only
    headers: dict[str, str] = {}
    if out.dtype.kind == "f" and not all_finite(out):
        headers[NONFINITE_HEADER] = str(int(out.size - np.count_nonzero(np.isfinite(out))))
    if out.ndim == 0:
        return out.item(), headers  # orjson takes arrays, not numpy scalars
    return out, headers


def encode_json(doc: Any) -> bytes:
    """JSON bytes for a response document that may hold numpy arrays (NaN -> null).

    Example::

        >>> encode_json({"outputs": np.array([0.5, np.nan])})
        b'{"outputs":[0.5,null]}'
    """
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_predict(output: np.ndarray, batched: bool) -> tuple[bytes, dict[str, str]]:
    """The ``/predict`` response: ``(body, headers)`` for a batched output array.

    Example::

        >>> encode_predict(np.array([[0.5]]), batched=False)
        (b'{"outputs":[0.5]}', {})
    """
    out, headers = _json_ready(output if batched else output[0])
    return encode_json({"outputs": out}), headers


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

    The structure is validated by :mod:`.v2_infer`; the tensor is then checked against
    ``spec`` (name, datatype, shape, values).

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
    tensor = req.input
    if tensor.binary_data_size is not None:
        arr = _binary_input(tensor, binary, header_length is not None, spec)
    else:
        arr = _json_input(tensor, spec)
    arr, _ = check_shape(arr, spec.input, f"input {spec.input.name!r}", allow_single=False)
    rid = req.id
    return InferRequest(arr, None if rid is None else _clip_id(rid), req.binary_output)


def _clip_id(rid: Any) -> str:
    # the id is echoed back: a string as sent (within reason), anything else as JSON text
    text = rid if isinstance(rid, str) else orjson.dumps(rid).decode()
    if len(text) > 256:
        raise ProtocolError(400, f'"id" must be at most 256 characters (got {len(text)})')
    return text


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


def _binary_input(tensor: Any, binary: bytes, has_header: bool, spec: ModelSpec) -> np.ndarray:
    want = spec.input
    if not has_header:
        raise ProtocolError(
            400, "binary_data_size was given without an Inference-Header-Content-Length header"
        )
    size = tensor.binary_data_size
    expected = math.prod(tensor.shape) * want.dtype.itemsize
    if size != expected or len(binary) != size:
        raise ProtocolError(
            400,
            f"binary data of input {want.name!r} must be {expected} bytes for shape "
            f"{_clip(tensor.shape)} of {want.datatype} (binary_data_size {size}, "
            f"{len(binary)} bytes received)",
        )
    arr = np.frombuffer(binary, dtype=want.dtype).reshape(tensor.shape)
    return check_values(arr, want, f"binary data of input {want.name!r}")


def _json_input(tensor: Any, spec: ModelSpec) -> np.ndarray:
    from .v2_infer import infer_hint

    want = spec.input
    if not tensor.has_data:
        raise ProtocolError(400, f'input {want.name!r} has no "data"; send {infer_hint(spec)}')
    arr = to_array(tensor.data, want, f'"data" of input {want.name!r}')
    count = math.prod(tensor.shape)
    if arr.size != count:
        raise ProtocolError(
            422,
            f'"data" of input {want.name!r} has {arr.size} values but "shape" '
            f"{_clip(tensor.shape)} needs {count}",
        )
    return arr.reshape(tensor.shape)


def encode_infer(output: np.ndarray, req: InferRequest, spec: ModelSpec) -> tuple[bytes, dict]:
    """The v2 infer response: ``(body, headers)``; binary when the request asked for it.

    Example::

        >>> body, headers = encode_infer(y, InferRequest(x), spec)  # doctest: +SKIP
    """
    out = np.ascontiguousarray(output, dtype=spec.output.dtype)
    headers: dict[str, str] = {}
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
        raw = out.tobytes()  # IEEE values as they are: binary tensors can carry NaN
        desc["parameters"] = {"binary_data_size": len(raw)}
        head = encode_json(doc)
        return head + raw, {
            "Inference-Header-Content-Length": str(len(head)),
            "Content-Type": _BINARY_TYPE,
        }
    desc["data"], headers = _json_ready(out.ravel())
    return encode_json(doc), {"Content-Type": "application/json", **headers}


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
