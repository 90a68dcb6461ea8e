"""What a metric's name says: whether higher is better, and which chart panel it joins.

One vocabulary for the comparison's summary, the worker's choice of the checkpoint
metric and the monitor's panels, so "val_acc is maximised" means the same everywhere.
"""

from __future__ import annotations

import re
import zlib

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


# Hue families: a base colour per quantity (matplotlib's tab10, without its grey and
# olive, which read poorly as thin lines). Common quantities keep a fixed family;
# others get one from a hash of the name that is the same in every process.
_FAMILIES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_FIXED = {"loss": 0, "acc": 2, "accuracy": 2, "f1": 4, "auc": 1, "auroc": 1, "lr": 5, "mse": 3}
# (mix with white, mix with black) per role: train lighter, val the base, test darker
_SHADES = {
    "train": (0.45, 0.0),
    "train_epoch": (0.2, 0.0),
    "val": (0.0, 0.0),
    "test": (0.0, 0.35),
}


def role_of(key: str) -> str:
    """Which split a metric belongs to: ``train``, ``train_epoch`` (a train metric's epoch
    mean), ``val`` or ``test``; a name without a split prefix counts as training.

    Example::

        >>> role_of("train_loss"), role_of("train_loss_epoch"), role_of("val/acc"), role_of("loss")
        ('train', 'train_epoch', 'val', 'train')
    """
    low = key.lower()
    if low.startswith(("val_", "valid_", "validation_", "val/", "valid/", "validation/")):
        return "val"
    if low.startswith(("test_", "test/")):
        return "test"
    return "train_epoch" if low.endswith("_epoch") else "train"


def _mix(color: str, white: float, black: float) -> str:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    out = []
    for c in (r, g, b):
        c = c + (255 - c) * white
        c = c * (1 - black)
        out.append(round(min(max(c, 0), 255)))
    return "#{:02x}{:02x}{:02x}".format(*out)


def metric_color(key: str) -> str:
    """A metric's colour, the same in every monitor and process: one hue per quantity
    (``train_loss`` and ``val_loss`` share blue), a shade per split (train lighter, val
    the base colour, test darker).

    Example::

        >>> metric_color("val_loss"), metric_color("train_loss"), metric_color("val_acc")
        ('#1f77b4', '#84b4d6', '#2ca02c')
    """
    quantity = panel_of(key).lower()
    index = _FIXED.get(quantity)
    if index is None:
        index = zlib.crc32(quantity.encode("utf-8")) % len(_FAMILIES)
    white, black = _SHADES[role_of(key)]
    return _mix(_FAMILIES[index], white, black)
