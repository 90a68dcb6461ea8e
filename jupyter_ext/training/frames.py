"""Run records and metric series as what the API and the views show.

Pure functions over :class:`~jupyter_ext.store.RunRecord` and metric series, shared by
``Run``, ``runs()``, the monitor and the comparison, so none of them imports another;
and the pieces of the worker whose arithmetic the views depend on (:class:`Pace`, the
ETA and throughput; :func:`notice_for`, which warnings become notices), kept here so
they are tested without training anything.
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Any

from ..store import ACTIVE, RunRecord, Series

if TYPE_CHECKING:
    import pandas as pd


def progress_of(row: RunRecord) -> dict[str, Any]:
    """epoch, step, total_steps, fraction (0..1 or None) and eta_s of a run.

    Example::

        >>> progress_of(store.get_run(run_id))["fraction"]  # doctest: +SKIP
        0.42
    """
    total, step = row.total_steps, row.step
    fraction = None
    if total and step is not None:
        fraction = min(step / total, 1.0)
    if row.status == "succeeded":
        fraction = 1.0
    return {
        "epoch": row.epoch,
        "step": step,
        "total_steps": total,
        "fraction": fraction,
        "eta_s": row.eta_s if row.status in ACTIVE else None,
    }


def metrics_frame(series: dict[str, Series]) -> pd.DataFrame:
    """A long DataFrame (key, step, epoch, time, value) of a run's metric series.

    Example::

        >>> metrics_frame(store.read_metrics(run_id)[0]).key.unique()  # doctest: +SKIP
        array(['train_loss', 'val_loss'], dtype=object)
    """
    import pandas as pd  # here, not at the top: the worker imports this module for Pace

    frames = [
        pd.DataFrame({"key": k, "step": s.step, "epoch": s.epoch, "time": s.time, "value": s.value})
        for k, s in series.items()
        if len(s)
    ]
    if not frames:
        return pd.DataFrame(
            {
                "key": pd.Series(dtype=str),
                "step": pd.Series(dtype="int64"),
                "epoch": pd.Series(dtype="int64"),
                "time": pd.Series(dtype=float),
                "value": pd.Series(dtype=float),
            }
        )
    return pd.concat(frames, ignore_index=True)


def duration_s(row: RunRecord) -> float | None:
    """Seconds the run has taken so far (running) or took (ended)."""
    start = row.started or row.created
    end = row.ended or (time.time() if row.status in ACTIVE else None)
    return None if start is None or end is None else end - start


def describe(row: RunRecord) -> str:
    """One line: ``<Run NAME (ID) STATUS step S/T>``."""
    p = progress_of(row)
    prog = ""
    if p["step"] is not None:
        prog = f" step {p['step']}" + (f"/{p['total_steps']}" if p["total_steps"] else "")
    return f"<Run {row.name} ({row.id}) {row.status}{prog}>"


def log_interval_note(row: RunRecord) -> str:
    """Say how often on-step metrics are logged, and whether the toolkit chose it.

    Example::

        >>> log_interval_note(record)  # doctest: +SKIP
        'on-step metrics every 1 step (chosen for this 32-step run; set ...)'
    """
    n = row.log_every_n_steps
    if not n:
        return ""
    steps = f"{n} step{'s' if n != 1 else ''}"
    if row.log_every_chosen:
        length = f"{row.total_steps}-step " if row.total_steps else ""
        return (
            f"on-step metrics every {steps} (chosen for this {length}run; "
            "set log_every_n_steps to override)"
        )
    return f"on-step metrics every {steps} (log_every_n_steps)"


def still_going(rows: list[RunRecord], shown: int = 5) -> str:
    """One line naming the runs that are still going ('' when none), for a kernel that
    (re)loads the extension: runs outlive kernels, and this is how a person learns so.

    Example::

        >>> still_going(store.list_runs(status=ACTIVE))  # doctest: +SKIP
        '1 run still going: baseline (running, step 120/500). `%monitor NAME` re-attaches.'
    """
    if not rows:
        return ""
    parts = []
    for r in rows[:shown]:
        p = progress_of(r)
        where = f", step {p['step']}/{p['total_steps'] or '?'}" if p["step"] is not None else ""
        parts.append(f"{r.name} ({r.status}{where})")
    more = f" and {len(rows) - shown} more (`%runs --status running`)" if len(rows) > shown else ""
    noun = "run" if len(rows) == 1 else "runs"
    return f"{len(rows)} {noun} still going: {', '.join(parts)}{more}. `%monitor NAME` re-attaches."


def fmt_duration(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour on); ``?`` when unknown.

    Example::

        >>> fmt_duration(26.4), fmt_duration(3725), fmt_duration(None)
        ('0:26', '1:02:05', '?')
    """
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rate(value: float | None, unit: str) -> str:
    if not value or not math.isfinite(value):
        return ""
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:,.{digits}f} {unit}/s"


def position_text(row: RunRecord) -> str:
    """Where a run is: ``epoch 15/15 · step 225/225`` (epochs counted from 1, as a person
    counts them; Lightning's ``current_epoch`` counts from 0).

    Example::

        >>> from jupyter_ext.store import RunRecord
        >>> position_text(RunRecord("r", "n", "e", "succeeded", 0.0, epoch=14, step=225,
        ...                         total_steps=225, total_epochs=15))
        'epoch 15/15 · step 225/225'
    """
    parts = []
    if row.epoch is not None:
        epoch = row.epoch + 1
        if row.total_epochs:
            epoch = min(epoch, row.total_epochs)
            parts.append(f"epoch {epoch}/{row.total_epochs}")
        else:
            parts.append(f"epoch {epoch}")
    if row.step is not None:
        parts.append(f"step {row.step}" + (f"/{row.total_steps}" if row.total_steps else ""))
    return " · ".join(parts)


def pace_text(row: RunRecord) -> str:
    """Throughput: ``8.6 steps/s · 275 samples/s`` (what is known of it).

    Example::

        >>> from jupyter_ext.store import RunRecord
        >>> pace_text(RunRecord("r", "n", "e", "running", 0.0, steps_per_s=8.61,
        ...                     samples_per_s=275.5))
        '8.61 steps/s · 276 samples/s'
    """
    parts = [_rate(row.steps_per_s, "steps"), _rate(row.samples_per_s, "samples")]
    return " · ".join(p for p in parts if p)


def progress_text(row: RunRecord, now: float | None = None) -> str:
    """The monitor's progress line, while a run goes and after it ended.

    Running: ``epoch 3/15 · step 40/225 · 8.6 steps/s · 275 samples/s · ETA 0:21 ·
    elapsed 0:05``. Ended: ``succeeded in 0:26 · epoch 15/15 · step 225/225 · ...``;
    a stopped run adds ``checkpoint kept · `run.resume()``` when it kept one.

    Example::

        >>> from jupyter_ext.store import RunRecord
        >>> row = RunRecord("r", "n", "e", "stopped", 0.0, started=10.0, ended=15.2, epoch=2,
        ...                 step=40, total_steps=225, total_epochs=15, last_checkpoint="last.ckpt")
        >>> progress_text(row)
        'stopped after 0:05 · epoch 3/15 · step 40/225 · checkpoint kept · `run.resume()`'
    """
    where, pace = position_text(row), pace_text(row)
    if row.status in ACTIVE:
        if row.step is None:
            return "queued" if row.status == "queued" else "starting..."
        parts = [where, pace]
        if row.eta_s is not None:
            parts.append(f"ETA {fmt_duration(row.eta_s)}")
        if row.started:
            parts.append(f"elapsed {fmt_duration((now or time.time()) - row.started)}")
        return " · ".join(p for p in parts if p)
    took = fmt_duration(duration_s(row))
    head = f"succeeded in {took}" if row.status == "succeeded" else f"{row.status} after {took}"
    parts = [head, where, pace]
    if row.status == "stopped":
        if row.last_checkpoint:
            parts.append("checkpoint kept · `run.resume()`")
        else:
            parts.append("no checkpoint kept")
    return " · ".join(p for p in parts if p)


class Pace:
    """Steps/s, samples/s and an ETA from the timings of a run's steps and validations.

    The ETA must stay steady and right from early on, so it is not the last interval's
    rate: training speed is the average over every step since the first (the first step
    carries one-time costs and is left out), and validation is counted apart: the
    validations still to come (one every ``steps_between`` steps, Lightning's schedule)
    times the mean length of those so far (before the first, a guess from the sanity
    check). Without a schedule, validation is spread over the steps as measured. Time is
    passed in, so this is tested with made-up timelines.

    Example::

        >>> pace = Pace(total_steps=100)
        >>> for i in range(1, 11):
        ...     pace.step(i, samples=32, t=float(i))   # one step a second
        >>> pace.steps_per_s, pace.samples_per_s, pace.eta_s(t=10.0)
        (1.0, 32.0, 90.0)
    """

    def __init__(
        self, total_steps: int | None, world_size: int = 1, steps_between: float | None = None
    ) -> None:
        self.total_steps = total_steps
        self.world_size = max(int(world_size), 1)  # samples/s counts every rank's batches
        self.steps_between = steps_between if steps_between and steps_between > 0 else None
        self._t0: float | None = None  # end of the first step seen
        self._step0 = 0
        self._samples = 0
        self.last_step = 0
        self._t_last: float | None = None  # when the estimate was last anchored
        self._val_started: float | None = None
        self._val_s = 0.0  # validation seconds since the first step
        self._vals = 0  # validations since the first step
        self._val_step: int | None = None  # the step the last validation followed
        self._val_steps = 0  # steps covered by those validations
        self._val_guess: float | None = None  # seconds of one validation, before any

    def guess_validation(self, sanity_s: float, sanity_batches: float, val_batches: float) -> None:
        """Guess a validation's length from the sanity check: ``sanity_s`` seconds for
        ``sanity_batches`` batches, and a validation has ``val_batches`` batches."""
        if sanity_batches > 0 and math.isfinite(val_batches) and val_batches > 0:
            self._val_guess = sanity_s / sanity_batches * val_batches

    def step(self, step: int, samples: int | None, t: float) -> None:
        """A training batch ended at time ``t`` with ``step`` optimizer steps done."""
        if self._t0 is None:
            self._t0, self._step0 = t, step
        else:
            self._samples += samples or 0
        self.last_step, self._t_last = step, t

    def validation_started(self, t: float) -> None:
        self._val_started = t

    def validation_ended(self, t: float) -> None:
        if self._val_started is None or self._t0 is None:
            self._val_started = None
            return
        self._val_s += t - self._val_started
        self._vals += 1
        self._val_step = self.last_step
        self._val_steps = self.last_step - self._step0
        self._val_started = None
        self._t_last = t

    @property
    def _train_s(self) -> float:
        if self._t0 is None or self._t_last is None:
            return 0.0
        # validation between the first and the last step is not training time
        return max(self._t_last - self._t0 - self._val_s, 0.0)

    @property
    def steps_per_s(self) -> float | None:
        done, secs = self.last_step - self._step0, self._train_s
        return done / secs if done > 0 and secs > 0 else None

    @property
    def samples_per_s(self) -> float | None:
        secs = self._train_s
        return self._samples * self.world_size / secs if self._samples and secs > 0 else None

    def _validation_left_s(self) -> float:
        one = self._val_s / self._vals if self._vals else self._val_guess
        if not one or not self.total_steps:
            return 0.0
        every = self.steps_between
        if every is None:  # no schedule: as measured, spread over the steps
            per_step = self._val_s / self._val_steps if self._val_steps > 0 else 0.0
            return per_step * max(self.total_steps - self.last_step, 0)
        done, total = (math.floor(n / every + 1e-9) for n in (self.last_step, self.total_steps))
        left = total - done
        due = abs(self.last_step / every - round(self.last_step / every)) < 1e-9
        if due and self.last_step > 0 and self._val_step != self.last_step:
            left += 1  # the validation after this step has not run (or is running)
        return max(left, 0) * one

    def eta_s(self, t: float) -> float | None:
        """Seconds to the end of training, as of time ``t``; None while unknown."""
        rate = self.steps_per_s
        if not self.total_steps or not rate or self._t_last is None:
            return None
        train_left = max(self.total_steps - self.last_step, 0) / rate
        return max(train_left + self._validation_left_s() - max(t - self._t_last, 0.0), 0.0)


# -- notices: Lightning's warnings, said shortly ---------------------------------------------
_NOTICE_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "logging",
        re.compile(
            r"number of training batches \((?P<batches>\d+)\) is smaller than the logging "
            r"interval Trainer\(log_every_n_steps=(?P<n>\d+)\)"
        ),
        "log_every_n_steps={n} is more than the {batches} batches of an epoch: on-step "
        "curves get few points (lower --log-every-n-steps, or leave it unset to let the "
        "toolkit choose)",
    ),
    (
        "dataloader",
        re.compile(
            r"The '(?P<loader>\w+)' does not have many workers.*?num_workers=(?P<n>\d+)", re.S
        ),
        "the {loader} has fewer than 2 workers and may hold training back: "
        "try DataLoader(num_workers={n})",
    ),
    (
        "dataloader",
        re.compile(r"Consider setting `persistent_workers=True` in '(?P<loader>\w+)'"),
        "the {loader} restarts its worker processes every epoch: "
        "DataLoader(persistent_workers=True) keeps them",
    ),
    (
        "precision",
        re.compile(
            r"precision='(?P<asked>[^']+)'\)` but (?P<what>.+?) is not supported on "
            r"(?P<where>\w+)\. Using `precision='(?P<used>[^']+)'` instead",
            re.S,
        ),
        "precision {asked} is not supported on {where}: this run uses {used}",
    ),
)
# Warnings the toolkit itself causes (its checkpoint directory is reused on resume), and
# one about the model summary's table, not the training.
_NOT_NOTICES = (
    re.compile(r"Checkpoint directory .* exists and is not empty", re.S),
    re.compile(r"is not supported by the model summary"),
)
NOTICE_CHARS = 220


def _first_sentence(message: str) -> str:
    text = " ".join(message.split())
    m = re.search(r"(?<=[.!?])\s+(?=[A-Z`(])", text)
    if m and m.start() >= 40:
        text = text[: m.start()]
    return text if len(text) <= NOTICE_CHARS else text[: NOTICE_CHARS - 1] + "…"


def notice_for(message: str, category: type[Warning], filename: str) -> dict[str, str] | None:
    """The notice a warning becomes in the monitor, or None for one that does not matter
    to the person (deprecations inside libraries, the toolkit's own doing).

    Example::

        >>> notice = notice_for(
        ...     "The number of training batches (15) is smaller than the logging interval "
        ...     "Trainer(log_every_n_steps=50). Set a lower value ...",
        ...     UserWarning, "/venv/site-packages/lightning/pytorch/loops/fit_loop.py")
        >>> notice["kind"], notice["text"][:60]
        ('logging', 'log_every_n_steps=50 is more than the 15 batches of an epoch')
    """
    from .tracebacks import is_user_file

    message = str(message)
    if any(p.search(message) for p in _NOT_NOTICES):
        return None
    ours = is_user_file(filename)
    chore = issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))
    if chore and not ours:
        return None  # a library's own upgrade chores, not the person's
    for kind, pattern, template in _NOTICE_RULES:
        m = pattern.search(message)
        if m:
            return {"kind": kind, "text": template.format(**m.groupdict()), "message": message}
    kind = "precision" if "precision" in message.lower() else "warning"
    if not ours and "lightning" in filename.replace("\\", "/").split("/"):
        kind = "precision" if kind == "precision" else "lightning"
    return {"kind": kind, "text": _first_sentence(message), "message": message}


_MARKETING = re.compile(
    r"💡|\bTip: For seamless\b|try installing \[?lit(logger|models)\b"
    r"|Lightning Experiments platform",
    re.I,
)


def without_ads(log: str) -> str:
    """A log with Lightning's promotional tips taken out (``💡 Tip: ... try installing
    litlogger ...``): a person reads the log tail for what their run did.

    Example::

        >>> without_ads("GPU available: False\\n💡 Tip: For seamless cloud logging, try "
        ...             "installing [litlogger](https://pypi.org/project/litlogger/)\\nEpoch 1")
        'GPU available: False\\nEpoch 1'
    """
    return "\n".join(line for line in log.split("\n") if not _MARKETING.search(line))
