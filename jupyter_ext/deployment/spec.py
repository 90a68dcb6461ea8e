"""What a deployed model takes and gives: tensor specs, datatypes, and the protocol error.

Shared by the request parsing (:mod:`.protocol`) and the v2 infer body models
(:mod:`.v2_infer`), which both build on it; standard library and numpy only, so it is one
of the files a bundle's server carries.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

#: KServe v2 datatype -> numpy dtype (BYTES and BF16 have no numpy tensor form here)
DATATYPES: dict[str, str] = {
    "BOOL": "bool",
    "UINT8": "uint8",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "INT8": "int8",
    "INT16": "int16",
    "INT32": "int32",
    "INT64": "int64",
    "FP16": "float16",
    "FP32": "float32",
    "FP64": "float64",
}
_BY_NUMPY = {v: k for k, v in DATATYPES.items()}


class ProtocolError(Exception):
    """A request the server refuses: ``status`` is the HTTP code, ``message`` says why.

    Example::

        >>> err = ProtocolError(422, "inputs has shape [2]; expected [N, 13]")
        >>> err.body()
        b'{"error": "inputs has shape [2]; expected [N, 13]"}'
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> bytes:
        return json.dumps({"error": self.message}).encode()


def datatype_of(dtype: Any) -> str:
    """The KServe v2 datatype name of a numpy (or torch, via its name) dtype.

    Example::

        >>> datatype_of(np.float32)
        'FP32'
    """
    text = str(dtype)
    if text.startswith("torch."):
        name = text[len("torch.") :]
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            name = text
    if name not in _BY_NUMPY:
        raise ValueError(
            f"dtype {dtype} cannot be served; use one of {', '.join(sorted(_BY_NUMPY))}"
        )
    return _BY_NUMPY[name]


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the model: name, v2 datatype and shape (-1: any size, the batch)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @functools.cached_property
    def dtype(self) -> np.dtype:
        # cached: every request reads it (a frozen dataclass still has a __dict__ for it)
        return np.dtype(DATATYPES[self.datatype])

    def shape_text(self, shape: tuple[int, ...] | None = None) -> str:
        dims = self.shape if shape is None else shape
        return "[" + ", ".join("N" if d == -1 else str(d) for d in dims) + "]"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TensorSpec:
        return cls(d["name"], d["datatype"], tuple(int(s) for s in d["shape"]))


@dataclass(frozen=True)
class ModelSpec:
    """What a deployed model accepts and returns, as the server advertises it.

    Example::

        >>> spec = ModelSpec("mlp", TensorSpec("input", "FP32", (-1, 13)),
        ...                  TensorSpec("output", "FP32", (-1, 3)), "onnxruntime_onnx")
        >>> spec.metadata()["inputs"]
        [{'name': 'input', 'datatype': 'FP32', 'shape': [-1, 13]}]
    """

    name: str
    input: TensorSpec
    output: TensorSpec
    platform: str
    version: str = "1"

    def metadata(self) -> dict[str, Any]:
        """The v2 model metadata response."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [self.input.to_json()],
            "outputs": [self.output.to_json()],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "platform": self.platform,
            "input": self.input.to_json(),
            "output": self.output.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelSpec:
        return cls(
            d["name"],
            TensorSpec.from_json(d["input"]),
            TensorSpec.from_json(d["output"]),
            d["platform"],
            d.get("version", "1"),
        )
