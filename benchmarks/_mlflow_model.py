"""Baseline (d): the benchmark model saved for ``mlflow models serve``, as mlflow's
documentation saves one.

    PYTHONPATH=.bench/mlflow python -m benchmarks._mlflow_model STATE_DICT OUT_DIR

``mlflow.pytorch.save_model`` with its defaults (mlflow 3: a ``torch.export`` program, which
needs the input example) and the example as the signature's source. Run in a subprocess by
``benchmarks.bench_serving`` with mlflow on the path: mlflow and the copies of its
dependencies (``make bench-mlflow``) stay out of the benchmark's own process.
"""

from __future__ import annotations

import sys

import mlflow
import mlflow.pytorch
import torch

from ._bare_fastapi import load_mlp

if __name__ == "__main__":
    state, out = sys.argv[1], sys.argv[2]
    model = load_mlp(state)
    example = torch.randn(4, 64).numpy()
    # no pip requirements: served with --env-manager local, nothing is installed
    mlflow.pytorch.save_model(model, out, input_example=example, pip_requirements=[])
    print(f"mlflow {mlflow.__version__}: saved to {out}", flush=True)
