"""What a metric's name says: whether higher is better, and which chart panel it joins.

One vocabulary for the comparison's summary, the worker's choice of the checkpoint
metric and the monitor's panels, so "val_acc is maximised" means the same everywhere.
"""

from __future__ import annotations

import re

# Metric names whose best value is the largest; any other metric is minimised (losses,
# errors, perplexity). Matched against the name's words: val_acc, test/f1, top5_accuracy.
_MAXIMISE = re.compile(
    r"(^|[^a-z])(acc|accuracy|top\d+|f1|f1_score|auc|auroc|ap|map|precision|recall|iou|miou|"
    r"dice|r2|score|bleu|rouge\w*|reward|return|psnr|ssim)($|[^a-z])"
)
_PREFIXES = ("train_", "val_", "valid_", "validation_", "test_", "train/", "val/", "test/")
_SUFFIXES = ("_step", "_epoch")


def best_mode(key: str) -> str:
    """``"max"`` for accuracy-like metric names, ``"min"`` for the rest (loss-like).

    Example::

        >>> best_mode("val_acc"), best_mode("val_loss"), best_mode("test/f1")
        ('max', 'min', 'max')
    """
    return "max" if _MAXIMISE.search(key.lower()) else "min"


def higher_is_better(key: str) -> bool:
    """Whether the largest value of this metric is the best one.

    Example::

        >>> higher_is_better("val_acc"), higher_is_better("val_loss")
        (True, False)
    """
    return best_mode(key) == "max"


def panel_of(key: str) -> str:
    """Metrics drawn together: train_loss, val_loss, train_loss_epoch -> 'loss'.

    Example::

        >>> panel_of("train_loss_epoch"), panel_of("val/acc")
        ('loss', 'acc')
    """
    name = key
    for p in _PREFIXES:
        if name.startswith(p):
            name = name[len(p) :]
            break
    for s in _SUFFIXES:
        if name.endswith(s):
            name = name[: -len(s)]
            break
    return name or key
