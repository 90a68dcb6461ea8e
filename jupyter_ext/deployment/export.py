"""Export a torch module to a servable artifact, and pick the format.

- ``pt2``: :func:`torch.export.export` with a dynamic batch dimension, saved with
  :func:`torch.export.save`. An example batch of one is doubled before tracing: traced on a
  batch of one, the export specialises the batch to 1 and refuses every other size.
- ``onnx``: torch's ONNX exporter, from that exported program, served with onnxruntime.
- ``pickle``: cloudpickle of the module (classes defined in the notebook travel by value),
  for models :func:`torch.export.export` cannot trace.

Every candidate is loaded back with the serving runtime (:func:`.runtime.load_predictor`) and
its output on the example compared with the eager model's: what passes is what will be
served. ``auto`` takes the fastest format that passes parity, timed on the example, and says
which and why.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import pickle
import shutil
import statistics
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import ModelSpec, TensorSpec, datatype_of
from .runtime import ARTIFACTS, FORMATS, PLATFORMS, Manifest, load_predictor, sha256_file

CHOICES = ("auto", *FORMATS)
# ONNX keeps weights inside the .onnx file below protobuf's 2 GiB limit; past it, beside it
_ONNX_INLINE_LIMIT = 1 << 30


class DeployError(RuntimeError):
    """A deployment could not be made; the message says what failed and what to do."""


class ExportError(DeployError):
    """No requested format could be exported with parity; ``failures`` maps format -> why."""

    def __init__(self, message: str, failures: dict[str, str]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass
class ExportResult:
    """The artifact chosen for serving, in ``directory`` (with its manifest)."""

    format: str
    directory: Path
    spec: ModelSpec
    max_abs_diff: float
    reason: str
    timings_us: dict[str, float] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    export_s: float = 0.0


def _short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, warnings and log lines."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def as_example(value: Any) -> Any:
    """Turn an example (tensor, numpy array, nested list) into a CPU tensor with a batch dim.

    Example::

        >>> as_example([[1.0, 2.0]]).shape
        torch.Size([1, 2])
    """
    import torch

    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        if len(value) != 1:
            raise ValueError(
                f"the example is a {type(value).__name__} of {len(value)} tensors; deployments "
                "serve models with one tensor input"
            )
        value = value[0]
    if isinstance(value, dict):
        raise ValueError(
            "the example is a dict; deployments serve models with one tensor input "
            "(give a tensor such as torch.randn(4, 13))"
        )
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    elif not isinstance(value, torch.Tensor):
        try:
            value = torch.tensor(value)
        except Exception as exc:
            raise ValueError(
                f"the example must be a tensor, an array or a nested list; got "
                f"{type(value).__name__} ({exc})"
            ) from None
    if value.ndim == 0:
        raise ValueError(
            "the example is a scalar; give a batch with the batch dimension first, "
            "e.g. torch.randn(4, 13)"
        )
    if value.shape[0] == 0:
        raise ValueError("the example is an empty batch; give at least one row")
    return value.detach().cpu()


def cpu_eval_model(model: Any) -> Any:
    """The model in eval mode on the CPU (a copy if it lives on an accelerator).

    Example::

        >>> import torch
        >>> cpu_eval_model(torch.nn.Dropout()).training
        False
    """
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device.type != "cpu" for t in tensors):
        model = copy.deepcopy(model).cpu()
    return model.eval()


def reference_output(model: Any, example: Any) -> Any:
    """The eager model's output on the example, checked to be one batch-first tensor.

    Example::

        >>> import torch
        >>> reference_output(torch.nn.Linear(3, 2), torch.zeros(4, 3)).shape
        torch.Size([4, 2])
    """
    import torch

    try:
        with torch.inference_mode():
            out = model(example)
    except Exception as exc:
        raise DeployError(
            f"the model fails on the example of shape {list(example.shape)}: {_short(exc)}"
        ) from exc
    if not isinstance(out, torch.Tensor):
        raise DeployError(
            f"the model returns {type(out).__name__}, not a tensor; deployments serve models "
            "with one tensor output (return a tensor from forward, or wrap the model)"
        )
    if out.ndim == 0 or out.shape[0] != example.shape[0]:
        raise DeployError(
            f"the model's output has shape {list(out.shape)} for a batch of {example.shape[0]}; "
            "deployments serve batch-first models (output row i belongs to input row i)"
        )
    return out


def make_spec(name: str, example: Any, output: Any, fmt: str) -> ModelSpec:
    """The served spec: the example's and output's dtypes and shapes, batch dim free.

    Example::

        >>> import torch
        >>> make_spec("m", torch.zeros(4, 3), torch.zeros(4, 2), "onnx").input.shape
        (-1, 3)
    """
    return ModelSpec(
        name,
        TensorSpec("input", datatype_of(example.dtype), (-1, *example.shape[1:])),
        TensorSpec("output", datatype_of(output.dtype), (-1, *output.shape[1:])),
        PLATFORMS[fmt],
    )


def _traced_example(example: Any) -> Any:
    import torch

    # a batch of one makes torch.export specialise the batch dimension to 1
    return example if example.shape[0] > 1 else torch.cat([example, example])


def export_program(model: Any, example: Any) -> Any:
    """``torch.export`` the model with a dynamic batch dimension.

    Example::

        >>> import torch
        >>> program = export_program(torch.nn.Linear(3, 2), torch.zeros(1, 3))
        >>> program.module()(torch.zeros(5, 3)).shape
        torch.Size([5, 2])
    """
    import torch

    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        return torch.export.export(
            model, (_traced_example(example),), dynamic_shapes=({0: batch},), strict=False
        )


def _write_pt2(program: Any, path: Path) -> None:
    import torch

    with _quiet():
        torch.export.save(program, str(path))


def _write_onnx(program: Any, model: Any, example: Any, path: Path) -> None:
    import torch

    size = sum(p.numel() * p.element_size() for p in model.parameters())
    with _quiet():
        torch.onnx.export(
            program,
            (_traced_example(example),),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamo=True,
            external_data=size > _ONNX_INLINE_LIMIT,
            optimize=True,
            verbose=False,
        )


def _write_pickle(model: Any, path: Path) -> None:
    import cloudpickle

    try:
        data = cloudpickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        from ..training.payload import find_unpicklable

        found = find_unpicklable(model, "model")
        if found is not None:
            where, err = found
            raise DeployError(f"cannot pickle `{where}`: {err}") from exc
        raise
    path.write_bytes(data)


def _time_us(fn: Any, x: np.ndarray, budget_s: float = 0.1, max_reps: int = 200) -> float:
    """Median wall time of ``fn(x)`` in microseconds, within a small time budget."""
    fn(x)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < max_reps and (len(times) < 5 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """The largest elementwise |a - b| (inf when the shapes differ).

    Example::

        >>> max_abs_diff(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
        0.5
    """
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def within(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    """Parity: same shape, and |a - b| <= tolerance * (1 + |b|) elementwise.

    Example::

        >>> within(np.array([1.0]), np.array([1.00001]), 1e-4)
        True
    """
    return a.shape == b.shape and bool(
        np.allclose(a.astype(np.float64), b.astype(np.float64), rtol=tolerance, atol=tolerance)
    )


def export_model(
    model: Any,
    example: Any,
    out_dir: Path,
    *,
    name: str,
    fmt: str = "auto",
    tolerance: float = 1e-4,
    api_key_hash: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ExportResult:
    """Export ``model`` into ``out_dir`` (artifact + manifest) in ``fmt`` or the best format.

    ``model`` must already be in eval mode on the CPU and ``example`` a CPU tensor (see
    :func:`cpu_eval_model`, :func:`as_example`). Each candidate format is written, loaded
    back with the serving runtime and checked against the eager model; ``auto`` then times
    those that pass and takes the fastest.

    Example::

        >>> x = torch.randn(4, 13)  # doctest: +SKIP
        >>> result = export_model(model, x, Path("out"), name="mlp")  # doctest: +SKIP
        >>> result.format, result.reason  # doctest: +SKIP
        ('onnx', 'auto: onnx is the fastest format passing parity ...')
    """
    if fmt not in CHOICES:
        raise ValueError(f"format must be one of {', '.join(CHOICES)}; got {fmt!r}")
    t_start = time.perf_counter()
    ref = reference_output(model, example)
    staging = out_dir.parent / f".{out_dir.name}.export-{uuid.uuid4().hex[:6]}"
    try:
        writer = _Writer(model, example, ref, staging, name, api_key_hash)
        wanted = list(FORMATS) if fmt == "auto" else [fmt]
        passed, failures = _check_candidates(writer, wanted, tolerance)
        if not passed:
            raise _no_format(model, fmt, failures)
        timings = _time_candidates(passed, example) if fmt == "auto" else {}
        chosen = min(passed, key=lambda f: timings.get(f, 0.0))
        reason = _reason(fmt, chosen, timings, failures, example)
        diff = passed[chosen][1]
        manifest = _install(
            staging / chosen,
            out_dir,
            {
                "reason": reason,
                "timings_us": timings,
                "max_abs_diff": diff,
                "tolerance": tolerance,
                "model_class": type(model).__qualname__,
                "example_shape": list(example.shape),
                "failures": failures,
                **(extra or {}),
            },
        )
        return ExportResult(
            chosen, out_dir, manifest.spec, diff, reason, timings, failures,
            time.perf_counter() - t_start,
        )  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class _Writer:
    """Writes one candidate artifact per format into ``staging/<format>/``.

    pt2 and onnx both start from one ``torch.export`` program, traced once (or failed
    once) for all of them.
    """

    model: Any
    example: Any
    reference: Any
    staging: Path
    name: str
    api_key_hash: str | None
    _program: Any = None
    _program_error: str | None = None

    def program(self) -> Any:
        if self._program is None and self._program_error is None:
            try:
                self._program = export_program(self.model, self.example)
            except Exception as exc:
                self._program_error = _short(exc)
        if self._program is None:
            raise DeployError(f"torch.export failed: {self._program_error}")
        return self._program

    def write(self, fmt: str) -> Path:
        """The candidate's directory, with its artifact and manifest."""
        directory = self.staging / fmt
        directory.mkdir(parents=True)
        path = directory / ARTIFACTS[fmt]
        if fmt == "pt2":
            _write_pt2(self.program(), path)
        elif fmt == "onnx":
            _write_onnx(self.program(), self.model, self.example, path)
        else:
            _write_pickle(self.model, path)
        spec = make_spec(self.name, self.example, self.reference, fmt)
        Manifest(fmt, path.name, sha256_file(path), spec, self.api_key_hash).write(directory)
        return directory


def _check_candidates(
    writer: _Writer, wanted: list[str], tolerance: float
) -> tuple[dict[str, tuple[Any, float]], dict[str, str]]:
    """``(passed, failures)``: format -> (predictor, max |diff|) for each format whose
    artifact, loaded as it will be served, matches the eager model; format -> why not."""
    ref_np = writer.reference.numpy()
    x_np = writer.example.numpy()
    passed: dict[str, tuple[Any, float]] = {}
    failures: dict[str, str] = {}
    for f in wanted:
        try:
            directory = writer.write(f)
            with _quiet():
                predictor = load_predictor(directory, trusted_root=writer.staging)
                out = predictor(x_np)
        except Exception as exc:
            failures[f] = str(exc) if isinstance(exc, DeployError) else _short(exc)
            continue
        diff = max_abs_diff(out, ref_np)
        if not within(out, ref_np, tolerance):
            failures[f] = (
                f"parity failed: max |diff| {diff:.3g} against the eager model exceeds the "
                f"tolerance {tolerance:g}"
            )
            continue
        passed[f] = (predictor, diff)
    return passed, failures


def _no_format(model: Any, fmt: str, failures: dict[str, str]) -> ExportError:
    lines = "\n".join(f"  - {f}: {why}" for f, why in failures.items())
    what = "in any format" if fmt == "auto" else f"as {fmt}"
    hint = "" if fmt == "auto" else " Try --format auto (or another --format)."
    return ExportError(
        f"could not export {type(model).__name__} {what}:\n{lines}\n{hint}".rstrip(), failures
    )


def _time_candidates(passed: dict[str, tuple[Any, float]], example: Any) -> dict[str, float]:
    x_np = example.numpy()
    return {f: round(_time_us(predictor, x_np), 1) for f, (predictor, _) in passed.items()}


def _reason(
    fmt: str, chosen: str, timings: dict[str, float], failures: dict[str, str], example: Any
) -> str:
    """Why ``chosen`` is served, as the deployment reports it."""
    if fmt != "auto":
        return f"{chosen}: as requested"
    ranked = ", ".join(f"{f} {timings[f]:.0f} us" for f in sorted(timings, key=timings.get))
    reason = (
        f"auto: {chosen} is the fastest format passing parity on the example "
        f"(batch {example.shape[0]}: {ranked})"
    )
    if failures:
        reason += "; not usable: " + "; ".join(f"{f} ({w})" for f, w in failures.items())
    return reason


def _install(candidate: Path, out_dir: Path, extra: dict[str, Any]) -> Manifest:
    """Move the chosen candidate to ``out_dir`` and record how it was chosen."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.move(str(candidate), str(out_dir))
    manifest = Manifest.read(out_dir)
    manifest.extra = extra
    manifest.write(out_dir)
    return manifest
