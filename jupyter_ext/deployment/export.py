"""Export a torch module to a servable artifact, and pick the format.

- ``onnx``: served with onnxruntime. Written by torch's TorchScript exporter (a trace:
  ~0.1 s for a small model, against ~3 s for the dynamo exporter in a fresh process); a
  trace that the tracer warns may not generalise (data-dependent control flow), one that
  fails, or a model over 1 GiB goes through the dynamo exporter from a ``torch.export``
  program instead.
- ``pt2``: :func:`torch.export.export` with a dynamic batch dimension, saved with
  :func:`torch.export.save`. An example batch of one is doubled before tracing: traced on a
  batch of one, the export specialises the batch to 1 and refuses every other size.
- ``pickle``: cloudpickle of the module (classes defined in the notebook travel by value),
  for models :func:`torch.export.export` cannot trace.

Every candidate is loaded back with the serving runtime (:func:`.runtime.load_predictor`) and
its output compared with the eager model's on the example and on a batch one row larger (a
trace that baked in the batch size fails there): what passes is what will be served.
``auto`` takes the fastest format that passes parity, timed on the example, and says which
and why. It tries only formats that can win: pt2 runs the same torch kernels as pickle
through the exported graph (measured slower than eager: an MLP 97 us against 43, a small
CNN 972 against 909), so it is tried only when pickle is not usable.

An export is kept in the workspace under its content hash (:func:`content_key`: the
weights, the modules' classes and their code, the example's shape, the versions of the
exporters): a redeploy of the same weights reuses it, checked against its manifest's
sha256 and against the model's output on the example, and skips the export and the format
trials.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import importlib.metadata
import io
import logging
import marshal
import math
import os
import pickle
import shutil
import statistics
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import ModelSpec, TensorSpec, datatype_of
from .runtime import (
    ARTIFACTS,
    FORMATS,
    MANIFEST,
    PLATFORMS,
    ArtifactError,
    Manifest,
    load_predictor,
    sha256_file,
)

CHOICES = ("auto", *FORMATS)
# ONNX keeps weights inside the .onnx file below protobuf's 2 GiB limit; past it, beside it
_ONNX_INLINE_LIMIT = 1 << 30
#: the workspace's folder of kept exports, one per content hash
CACHE_DIR = "export-cache"
#: kept exports beyond these are evicted, least recently used first
CACHE_MAX_BYTES = 2 << 30
CACHE_MAX_ENTRIES = 32
# bump when what an export contains changes: older entries then never match
_CACHE_SCHEMA = 2
# a candidate whose first runs are all this many times slower than the best so far is
# not timed further: it cannot win, and a slow one would eat the whole time budget
_HOPELESS = 3.0
PT2_SKIPPED = (
    "it runs the same torch kernels as pickle through the exported graph, so it cannot beat "
    "pickle, which passed; it is tried when pickle is not usable"
)


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
    #: format or step -> why it was not done (a format not tried, the export reused)
    skipped: dict[str, str] = field(default_factory=dict)
    #: seconds per step: export (writing candidates), parity (loading them back and
    #: comparing), choose (timing them), cache (hashing, reusing or keeping the export)
    steps: dict[str, float] = field(default_factory=dict)
    #: the content hash the export is kept under (None: not kept)
    content_key: str | None = None
    #: when the export was reused, when it had been made (its manifest's ``created``)
    reused_from: float | None = None
    #: the eager model's output on the example (numpy), for the target's own checks
    reference: Any = None


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


def _write_onnx_traced(model: Any, example: Any, path: Path) -> None:
    """ONNX from the TorchScript tracer, refused when the tracer warns that the trace may
    not hold for other inputs (a Python branch on a tensor, a size read as a constant)."""
    import torch

    with _quiet(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            model,
            (_traced_example(example),),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            dynamo=False,
        )
    traced = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    if traced:
        first = " ".join(str(traced[0].message).split())[:200]
        raise DeployError(f"the trace may not hold for other inputs ({first})")


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


def _time_us(
    fn: Any,
    x: np.ndarray,
    budget_s: float = 0.1,
    max_reps: int = 200,
    give_up_above_us: float | None = None,
) -> float:
    """Median wall time of ``fn(x)`` in microseconds, within a small time budget; after
    three runs all slower than ``give_up_above_us``, the median of those."""
    fn(x)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < max_reps and (len(times) < 5 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
        if give_up_above_us and len(times) == 3 and min(times) * 1e6 > give_up_above_us:
            break
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
    cache: Path | None = None,
) -> ExportResult:
    """Export ``model`` into ``out_dir`` (artifact + manifest) in ``fmt`` or the best format.

    ``model`` must already be in eval mode on the CPU and ``example`` a CPU tensor (see
    :func:`cpu_eval_model`, :func:`as_example`). Each candidate format is written, loaded
    back with the serving runtime and checked against the eager model; ``auto`` then times
    those that pass and takes the fastest. ``cache``: the folder of kept exports (inside the
    workspace); an export of the same content is reused from it, and a new one kept there.

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
    parity = _Parity.of(model, example, ref, tolerance)
    steps = {"export": 0.0, "parity": time.perf_counter() - t_start, "choose": 0.0, "cache": 0.0}
    key, not_reused = None, None
    if cache is not None:
        t0 = time.perf_counter()
        with contextlib.suppress(Exception):  # state that cannot be hashed: nothing is kept
            key = content_key(model, example, fmt, tolerance)
        steps["cache"] += time.perf_counter() - t0
        if key is not None:
            reused, not_reused = _reuse(
                cache, key, parity, out_dir, name, api_key_hash, extra, steps
            )
            if reused is not None:
                reused.export_s = time.perf_counter() - t_start
                reused.reference = parity.ref
                return reused
    staging = out_dir.parent / f".{out_dir.name}.export-{uuid.uuid4().hex[:6]}"
    try:
        writer = _Writer(model, example, ref, staging, name, api_key_hash)
        passed, failures, skipped = _check_candidates(writer, parity, fmt, steps)
        if not passed:
            raise _no_format(model, fmt, failures)
        t0 = time.perf_counter()
        timings = _time_candidates(passed, example) if fmt == "auto" else {}
        steps["choose"] = time.perf_counter() - t0
        chosen = min(passed, key=lambda f: timings.get(f, 0.0))
        reason = _reason(fmt, chosen, timings, failures, skipped, example)
        threads = None
        if chosen == "onnx":
            t0 = time.perf_counter()
            threads, note = _onnx_threads(staging / "onnx", passed["onnx"][0], example)
            steps["choose"] += time.perf_counter() - t0
            reason += note
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
                "skipped": skipped,
                "exporter": writer.exporters.get(chosen),
                "threads": threads,
                **(extra or {}),
            },
        )
        if key is not None and cache is not None:
            t0 = time.perf_counter()
            _keep(cache, key, out_dir)
            steps["cache"] += time.perf_counter() - t0
        if not_reused:
            skipped = {**skipped, "reuse": not_reused}
        return ExportResult(
            chosen, out_dir, manifest.spec, diff, reason, timings, failures,
            time.perf_counter() - t_start, skipped, steps, key, None, parity.ref,
        )  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@dataclass
class _Parity:
    """What a candidate must reproduce: the eager model's output on the example, and on a
    batch one row larger (where a trace that baked in the batch size goes wrong)."""

    x: np.ndarray
    ref: np.ndarray
    tolerance: float
    x2: np.ndarray | None = None
    ref2: np.ndarray | None = None

    @classmethod
    def of(cls, model: Any, example: Any, ref: Any, tolerance: float) -> _Parity:
        import torch

        x2 = torch.cat([example, example[:1]])
        try:
            with torch.inference_mode():
                ref2 = model(x2)
        except Exception:
            ref2 = None  # the model itself takes only the example's batch: nothing to add
        if not isinstance(ref2, torch.Tensor) or ref2.ndim == 0 or ref2.shape[0] != len(x2):
            return cls(example.numpy(), ref.numpy(), tolerance)
        return cls(example.numpy(), ref.numpy(), tolerance, x2.numpy(), ref2.numpy())

    def check(self, predictor: Any) -> tuple[float, str | None]:
        """``(max |diff| on the example, why parity fails or None)``."""
        out = predictor(self.x)
        diff = max_abs_diff(out, self.ref)
        if not within(out, self.ref, self.tolerance):
            return diff, (
                f"parity failed: max |diff| {diff:.3g} against the eager model exceeds the "
                f"tolerance {self.tolerance:g}"
            )
        if self.x2 is not None and self.ref2 is not None:
            out2 = predictor(self.x2)
            if not within(out2, self.ref2, self.tolerance):
                return diff, (
                    f"parity failed on a batch of {len(self.x2)}: max |diff| "
                    f"{max_abs_diff(out2, self.ref2):.3g} against the eager model exceeds the "
                    f"tolerance {self.tolerance:g} (the export holds only for the example's batch)"
                )
        return diff, None


@dataclass
class _Writer:
    """Writes one candidate artifact per format into ``staging/<format>/``.

    pt2 and the dynamo ONNX exporter both start from one ``torch.export`` program, traced
    once (or failed once) for all of them.
    """

    model: Any
    example: Any
    reference: Any
    staging: Path
    name: str
    api_key_hash: str | None
    #: format -> the exporter that wrote the candidate that passed
    exporters: dict[str, str] = field(default_factory=dict)
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

    def attempts(self, fmt: str) -> list[tuple[str, Any]]:
        """``(exporter, write(path))`` for ``fmt``, cheapest first: the next is tried when
        one fails or misses parity."""
        if fmt == "pt2":
            return [("torch.export", lambda path: _write_pt2(self.program(), path))]
        if fmt == "pickle":
            return [("cloudpickle", lambda path: _write_pickle(self.model, path))]
        dynamo = (
            "dynamo",
            lambda path: _write_onnx(self.program(), self.model, self.example, path),
        )
        size = sum(p.numel() * p.element_size() for p in self.model.parameters())
        if size > _ONNX_INLINE_LIMIT:
            return [dynamo]  # only the dynamo exporter keeps weights outside the protobuf
        traced = ("torchscript", lambda path: _write_onnx_traced(self.model, self.example, path))
        return [traced, dynamo]

    def write(self, fmt: str, write: Any) -> Path:
        """The candidate's directory, with its artifact (by ``write``) and manifest."""
        directory = self.staging / fmt
        shutil.rmtree(directory, ignore_errors=True)  # what an earlier attempt left
        directory.mkdir(parents=True)
        path = directory / ARTIFACTS[fmt]
        write(path)
        spec = make_spec(self.name, self.example, self.reference, fmt)
        Manifest(fmt, path.name, sha256_file(path), spec, self.api_key_hash).write(directory)
        return directory


def _check_candidates(
    writer: _Writer, parity: _Parity, fmt: str, steps: dict[str, float]
) -> tuple[dict[str, tuple[Any, float]], dict[str, str], dict[str, str]]:
    """``(passed, failures, skipped)``: format -> (predictor, max |diff|) for each format
    whose artifact, loaded as it will be served, matches the eager model; format -> why
    not; format -> why it was not tried. ``steps`` gains the seconds spent writing
    (``export``) and loading back and comparing (``parity``)."""
    passed: dict[str, tuple[Any, float]] = {}
    failures: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for f in ("onnx", "pickle", "pt2") if fmt == "auto" else (fmt,):
        if f == "pt2" and "pickle" in passed:
            skipped[f] = PT2_SKIPPED
            continue
        attempts = writer.attempts(f)
        whys = []
        for exporter, write in attempts:
            t0 = time.perf_counter()
            try:
                directory = writer.write(f, write)
            except Exception as exc:
                why = str(exc) if isinstance(exc, DeployError) else _short(exc)
            else:
                why = None
            t1 = time.perf_counter()
            steps["export"] += t1 - t0
            if why is None:
                try:
                    with _quiet():
                        predictor = load_predictor(directory, trusted_root=writer.staging)
                        diff, why = parity.check(predictor)
                except Exception as exc:
                    why = str(exc) if isinstance(exc, DeployError) else _short(exc)
                steps["parity"] += time.perf_counter() - t1
            if why is None:
                passed[f] = (predictor, diff)
                writer.exporters[f] = exporter
                break
            whys.append(f"{exporter} exporter: {why}" if len(attempts) > 1 else why)
        if f not in passed:
            failures[f] = "; ".join(whys)
    return passed, failures, skipped


def _no_format(model: Any, fmt: str, failures: dict[str, str]) -> ExportError:
    lines = "\n".join(f"  - {f}: {why}" for f, why in failures.items())
    what = "in any format" if fmt == "auto" else f"as {fmt}"
    hint = "" if fmt == "auto" else " Try --format auto (or another --format)."
    return ExportError(
        f"could not export {type(model).__name__} {what}:\n{lines}\n{hint}".rstrip(), failures
    )


def _time_candidates(passed: dict[str, tuple[Any, float]], example: Any) -> dict[str, float]:
    """Each candidate's median latency on the example; one clearly slower than the best
    so far is left after three runs (its figure is then the median of those)."""
    x_np = example.numpy()
    timings: dict[str, float] = {}
    for f, (predictor, _) in passed.items():
        best = min(timings.values(), default=None)
        limit = None if best is None else best * _HOPELESS
        timings[f] = round(_time_us(predictor, x_np, give_up_above_us=limit), 1)
    return timings


def _onnx_threads(directory: Path, default: Any, example: Any) -> tuple[int | None, str]:
    """``(threads, note)``: 1 when onnxruntime is faster on one intra-op thread than on its
    default pool for this model (small models: waking the pool's threads costs more than
    they add), else None (the runtime's default); the note says so for the reason.

    The server uses it unless ``--threads`` is given.
    """
    single = load_predictor(directory, trusted_root=directory, threads=1)
    one = example[:1].numpy()
    x = example.numpy()
    pooled_us = _time_us(default, one, budget_s=0.05) + _time_us(default, x, budget_s=0.05)
    single_us = _time_us(single, one, budget_s=0.05) + _time_us(single, x, budget_s=0.05)
    if single_us < 0.9 * pooled_us:
        return 1, (
            f"; onnxruntime on 1 thread (batch 1 + batch {len(x)}: {single_us:.0f} us, "
            f"against {pooled_us:.0f} us on its default thread pool)"
        )
    return None, ""


def _reason(
    fmt: str,
    chosen: str,
    timings: dict[str, float],
    failures: dict[str, str],
    skipped: dict[str, str],
    example: Any,
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
    if skipped:
        reason += "; not tried: " + "; ".join(f"{f} ({w})" for f, w in skipped.items())
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


# -- kept exports: reuse what an earlier deploy of the same content exported --------------

_NOT_HASHED = ("builtins", "abc", "typing", "torch", "lightning", "pytorch_lightning")
_PLAIN = (bool, int, float, str, type(None))


@functools.cache
def _versions() -> tuple[str, ...]:
    """What else decides an export: Python and the exporters' and runtimes' versions."""
    found = [sys.version]
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime", "cloudpickle", "lightning"):
        try:
            found.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{dist} absent")
    return tuple(found)


def _code_of(cls: type) -> bytes:
    """The bytecode of the methods ``cls`` and its bases define outside torch and
    Lightning (whose code their versions stand for): a changed ``forward`` changes it."""
    parts = []
    for klass in cls.__mro__:
        if (getattr(klass, "__module__", "") or "").split(".")[0] in _NOT_HASHED:
            continue
        for attr, value in sorted(vars(klass).items(), key=lambda kv: kv[0]):
            fn = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            fn = fn.fget if isinstance(fn, property) else fn
            code = getattr(fn, "__code__", None)
            if code is not None:
                parts.append(attr.encode() + marshal.dumps(code))
    return b"".join(parts)


def _plain_attributes(module: Any) -> list[tuple[str, Any]]:
    """A module's settings that are not tensors (``self.scale = 0.5``), which its
    forward may read."""
    found = []
    for k, v in vars(module).items():
        if k.startswith("_") or k == "training":
            continue
        if isinstance(v, _PLAIN) or (
            isinstance(v, tuple) and all(isinstance(i, _PLAIN) for i in v)
        ):
            found.append((k, v))
    return sorted(found, key=lambda kv: kv[0])


def content_key(model: Any, example: Any, fmt: str, tolerance: float) -> str:
    """The sha256 an export of ``model`` is kept under: every parameter and buffer (names,
    dtypes, shapes, bytes), each module's class, the code of its methods and its plain
    settings, the example's shape and dtype, ``fmt``, ``tolerance`` and the versions of
    Python, torch and the exporters. Code outside the model's classes (a function its
    forward calls) is not in it: a reused export is therefore checked on the example again.

    Example::

        >>> import torch
        >>> len(content_key(torch.nn.Linear(3, 2), torch.zeros(4, 3), "auto", 1e-4))
        64
    """
    import torch

    h = hashlib.sha256()

    def put(*parts: Any) -> None:
        for part in parts:
            h.update(part if isinstance(part, bytes) else repr(part).encode())
            h.update(b"\0")

    put(_CACHE_SCHEMA, fmt, float(tolerance), tuple(example.shape), str(example.dtype))
    put(*_versions())
    codes: dict[type, bytes] = {}
    for name, module in model.named_modules():
        cls = type(module)
        if cls not in codes:
            codes[cls] = _code_of(cls)
        put(name, cls.__module__, cls.__qualname__, codes[cls], _plain_attributes(module))
    for kind, named in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, tensor in named:
            t = tensor.detach().contiguous().reshape(-1)
            put(kind, name, str(tensor.dtype), tuple(tensor.shape))
            h.update(memoryview(t.view(torch.uint8).numpy()))
    return h.hexdigest()


def _reuse(
    cache: Path,
    key: str,
    parity: _Parity,
    out_dir: Path,
    name: str,
    api_key_hash: str | None,
    extra: dict[str, Any] | None,
    steps: dict[str, float],
) -> tuple[ExportResult | None, str | None]:
    """``(result, None)`` when the export kept under ``key`` is reused into ``out_dir``;
    ``(None, why not)`` when one was kept but fails its checks (it is then deleted);
    ``(None, None)`` when none was kept."""
    entry = cache / key
    if not (entry / MANIFEST).is_file():
        return None, None
    t0 = time.perf_counter()
    staging = out_dir.parent / f".{out_dir.name}.reuse-{uuid.uuid4().hex[:6]}"
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(entry, staging)
        t1 = time.perf_counter()
        steps["cache"] += t1 - t0
        try:
            kept = Manifest.read(staging)
            with _quiet():
                # the artifact's sha256 is checked against the manifest before it is loaded
                predictor = load_predictor(staging, trusted_root=staging)
                diff, why = parity.check(predictor)
        except ArtifactError as exc:
            why = f"it does not match its manifest ({exc})"
        except Exception as exc:
            why = f"it cannot be loaded ({_short(exc)})"
        steps["parity"] += time.perf_counter() - t1
        if why is not None:
            shutil.rmtree(entry, ignore_errors=True)
            return None, f"the export kept as {key[:12]} was not reused: {why}; exported again"
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(kept.created))
        note = (
            f"reused the {kept.format} export of these weights from {when} "
            f"(content hash {key[:12]}): export and format trials skipped"
        )
        skipped = {**kept.extra.get("skipped", {}), "export": note}
        kept.spec = dataclasses.replace(kept.spec, name=name)
        kept.api_key_sha256 = api_key_hash
        kept.extra = {
            **kept.extra,
            "max_abs_diff": diff,
            "skipped": skipped,
            "reused": {"content_key": key, "exported": kept.created},
            **(extra or {}),
        }
        kept.created = time.time()
        kept.write(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(staging, out_dir)
        os.utime(entry)  # most recently used: evicted last
        info = kept.extra
        return ExportResult(
            kept.format, out_dir, kept.spec, diff, info.get("reason", ""),
            info.get("timings_us", {}), info.get("failures", {}), 0.0, skipped, steps, key,
            info["reused"]["exported"],
        ), None  # fmt: skip
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _size(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.is_file())


def _keep(cache: Path, key: str, out_dir: Path) -> None:
    """Keep a copy of the export in ``out_dir`` under ``key``, then evict the least
    recently used exports past :data:`CACHE_MAX_ENTRIES` or :data:`CACHE_MAX_BYTES`.
    Best effort: a full disk or a concurrent keeper only means nothing is kept."""
    entry = cache / key
    if entry.exists() or _size(out_dir) > CACHE_MAX_BYTES:
        return
    tmp = cache / f".{key[:12]}.{uuid.uuid4().hex[:6]}"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copytree(out_dir, tmp)
        manifest = Manifest.read(tmp)
        manifest.api_key_sha256 = None  # a deployment's own; set again when reused
        manifest.write(tmp)
        os.rename(tmp, entry)  # atomic: readers see the whole entry or none
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    _evict(cache, entry)


def _evict(cache: Path, keep: Path) -> None:
    entries = []
    stale = time.time() - 3600  # a copy that was never renamed into place: its keeper died
    for d in cache.iterdir():
        with contextlib.suppress(OSError):
            if d.is_dir() and not d.name.startswith("."):
                entries.append((d.stat().st_mtime, _size(d), d))
            elif d.is_dir() and d.stat().st_mtime < stale:
                shutil.rmtree(d, ignore_errors=True)
    total = 0
    for i, (_, size, d) in enumerate(sorted(entries, key=lambda e: e[0], reverse=True)):
        total += size
        if d != keep and (i >= CACHE_MAX_ENTRIES or total > CACHE_MAX_BYTES):
            shutil.rmtree(d, ignore_errors=True)
