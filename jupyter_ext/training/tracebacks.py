"""Failures as a person reads them: the error first, their own code next, the framework folded.

A run that fails inside ``Trainer.fit`` has a traceback of ~40 frames of Lightning's
loops and torch before the one line that matters, and the person's own frames (a
notebook class that travelled to the worker by value) come without source. These pure
functions turn an exception (in the worker) or a stored traceback text (older runs, lost
runs) into a :class:`ShapedError`: the exception type and message, the frames of the
person's own code with their source lines (notebook cells named as IPython names them,
``Cell In[8], line 4``), and the framework frames counted and folded behind a toggle.

Notebook cells reach the worker as text: :func:`notebook_cells` collects them in the
kernel (IPython caches each cell in :mod:`linecache` under the filename it compiled it
with), and :func:`register_cells` puts them back into the worker's :mod:`linecache`
under the same filenames, so Python's own traceback shows the cell's source lines.
cloudpickle sends notebook functions without their filename (``<dynamic-code>``), so
:func:`code_origins` records it in the kernel and :func:`restore_code_origins` gives it
back to the unpickled functions in the worker.

Example::

    >>> try:
    ...     {}["lr"]
    ... except KeyError as exc:
    ...     shaped = shape_exception(exc)
    >>> shaped.headline
    "KeyError: 'lr'"
"""

from __future__ import annotations

import html
import itertools
import linecache
import os
import re
import sys
import sysconfig
import traceback
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONTEXT_BEFORE = 2  # source lines shown above the failing line of a user frame
CONTEXT_AFTER = 1
MAX_CELL_CHARS = 2_000_000  # cell sources sent to a worker, newest cells first
DYNAMIC_CODE = "<dynamic-code>"  # cloudpickle's filename for code it sent by value

_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # jupyter_ext/: the toolkit's own frames


@dataclass(frozen=True)
class Frame:
    """One frame of a traceback: where (file, line, function), its source, whose code.

    ``where`` is what a person reads (``Cell In[8], line 4`` for a notebook cell);
    ``context`` holds ``(line number, text)`` pairs around the failing line (user frames
    only); ``cols`` the failing expression's columns on that line, when Python knows them.
    """

    file: str
    line: int | None
    name: str
    source: str = ""
    user: bool = False
    where: str = ""
    context: tuple[tuple[int, str], ...] = ()
    cols: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "line": self.line,
            "name": self.name,
            "source": self.source,
            "user": self.user,
            "where": self.where,
        }
        if self.context:
            out["context"] = [list(c) for c in self.context]
        if self.cols:
            out["cols"] = list(self.cols)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Frame:
        cols = d.get("cols")
        return cls(
            file=str(d.get("file", "")),
            line=d.get("line"),
            name=str(d.get("name", "")),
            source=str(d.get("source", "")),
            user=bool(d.get("user")),
            where=str(d.get("where", "")),
            context=tuple((int(n), str(t)) for n, t in d.get("context", ())),
            cols=(int(cols[0]), int(cols[1])) if cols else None,
        )


@dataclass(frozen=True)
class ShapedError:
    """A failure shaped for reading: :attr:`headline` first, then :attr:`user_frames`.

    ``type`` is empty when the text was not a Python traceback (``Run lost: ...``);
    ``causes`` are the chained exceptions before the last one (``"KeyError: 'x'"``), and
    ``text`` is the full traceback, unchanged (what ``Run.error`` returns).
    """

    type: str
    message: str
    frames: tuple[Frame, ...] = ()
    causes: tuple[str, ...] = ()
    text: str = ""
    cause_frames: tuple[Frame, ...] = field(default=(), repr=False)

    @property
    def headline(self) -> str:
        """``Type: message`` (or the message alone when there is no exception type)."""
        if not self.type:
            return self.message
        return f"{self.type}: {self.message}" if self.message else self.type

    @property
    def user_frames(self) -> tuple[Frame, ...]:
        """The person's own frames (of the last exception, else of the nearest cause)."""
        own = tuple(f for f in self.frames if f.user)
        return own or tuple(f for f in self.cause_frames if f.user)

    @property
    def hidden(self) -> int:
        """How many frames are folded away (Lightning, torch, the toolkit, the stdlib)."""
        return sum(1 for f in self.frames if not f.user)

    def to_json(self) -> dict[str, Any]:
        """What the store keeps beside the text (``RunRecord.error_info``)."""
        return {
            "type": self.type,
            "message": self.message,
            "frames": [f.to_json() for f in self.frames],
            "causes": list(self.causes),
            "cause_frames": [f.to_json() for f in self.cause_frames],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], text: str = "") -> ShapedError:
        return cls(
            type=str(d.get("type", "")),
            message=str(d.get("message", "")),
            frames=tuple(Frame.from_json(f) for f in d.get("frames", ())),
            causes=tuple(str(c) for c in d.get("causes", ())),
            text=text,
            cause_frames=tuple(Frame.from_json(f) for f in d.get("cause_frames", ())),
        )


# -- whose code is a frame -----------------------------------------------------------------
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    dirs |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    dirs.discard("")
    # prefixes like /usr would swallow user files under /usr/src: keep the lib dirs only
    dirs = {d for d in dirs if "lib" in Path(d).parts or d in (paths.get("stdlib"),)}
    roots = sorted(os.path.join(os.path.abspath(d), "") for d in dirs)
    return (*roots, os.path.join(_PACKAGE_DIR, ""))


_LIBRARY_DIRS = _library_dirs()
_STDLIB = os.path.join(os.path.abspath(sysconfig.get_paths()["stdlib"]), "")


def is_user_file(filename: str, cells: dict[str, str] | None = None) -> bool:
    """Whether ``filename`` holds the person's own code: a notebook cell, or a file that is
    not in the standard library, an installed package or the toolkit.

    Example::

        >>> cell = "/tmp/ipykernel_41/2081851603.py"
        >>> is_user_file(cell, {cell: "Cell In[3]"}), is_user_file("/home/me/model.py")
        (True, True)
        >>> import lightning
        >>> is_user_file(lightning.__file__)
        False
    """
    if cells and filename in cells:
        return True
    if filename.startswith("<"):
        # classic IPython's cell names; notebook code whose cell is not known
        return filename.startswith("<ipython-input-") or filename == DYNAMIC_CODE
    parts = Path(filename).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    path = os.path.abspath(filename)
    return not any(path.startswith(d) for d in _LIBRARY_DIRS)


# -- notebook cells, kernel side and worker side ------------------------------------------
def notebook_cells(shell: Any = None, max_chars: int = MAX_CELL_CHARS) -> dict[str, dict[str, Any]]:
    """The cells this IPython kernel ran, as ``{filename: {"cell": N, "source": text}}``.

    ``filename`` is what IPython compiled the cell with (the ``co_filename`` of every
    function and class the cell defined, which cloudpickle keeps when they travel by
    value); ``N`` is its execution count (``In[N]``). Newest cells first, up to
    ``max_chars`` of source in all. Empty outside IPython.

    Example::

        >>> notebook_cells()  # doctest: +SKIP
        {'/tmp/ipykernel_41/2081851603.py': {'cell': 3, 'source': 'class Net(...): ...'}}
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return {}
        shell = get_ipython()
    names = getattr(getattr(shell, "compile", None), "_filename_map", None)
    if not names:
        return {}
    out: dict[str, dict[str, Any]] = {}
    budget = max_chars
    for filename, number in reversed(list(names.items())):
        entry = linecache.cache.get(filename)
        if not entry or len(entry) < 3:
            continue
        source = "".join(entry[2])
        if len(source) > budget:
            continue
        budget -= len(source)
        out[filename] = {"cell": number, "source": source}
    return out


def cell_label(number: Any) -> str:
    """How IPython names a cell in tracebacks: ``Cell In[8]``.

    Example::

        >>> cell_label(8)
        'Cell In[8]'
    """
    return f"Cell In[{number}]"


def register_cells(cells: dict[str, dict[str, Any]] | None) -> dict[str, str]:
    """Make the kernel's cells readable to this process's tracebacks; ``{filename: label}``.

    Each cell goes into :mod:`linecache` under the filename the kernel compiled it with
    (mtime None: :func:`linecache.checkcache` never drops it), so ``traceback`` shows the
    cell's lines for code that travelled from the notebook.

    Example::

        >>> register_cells({"/tmp/ipykernel_1/9.py": {"cell": 4, "source": "x = 1\\n"}})
        {'/tmp/ipykernel_1/9.py': 'Cell In[4]'}
        >>> linecache.getline("/tmp/ipykernel_1/9.py", 1)
        'x = 1\\n'
    """
    labels: dict[str, str] = {}
    for filename, cell in (cells or {}).items():
        source = str(cell.get("source", ""))
        lines = [line + "\n" for line in source.splitlines()]
        linecache.cache[filename] = (len(source), None, lines, filename)
        labels[filename] = cell_label(cell.get("cell", "?"))
    return labels


def _notebook_functions(roots: Iterable[Any], limit: int = 5000) -> Iterator[types.FunctionType]:
    """Functions defined in the notebook (module ``__main__``, or code cloudpickle sent by
    value) reachable from ``roots``: methods of their classes and bases, attributes,
    submodules, closures. Bounded: a dataset of a million items is not walked through, and
    an object's class is looked at before its attributes (the methods matter most)."""
    seen: set[int] = set()
    stack = list(roots)
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
            continue
        seen.add(id(obj))
        try:
            if isinstance(obj, types.FunctionType):
                if obj.__module__ == "__main__" or obj.__code__.co_filename == DYNAMIC_CODE:
                    yield obj
                stack += [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
                stack += list(obj.__dict__.values())  # functools.wraps keeps __wrapped__ here
            elif isinstance(obj, (staticmethod, classmethod)):
                stack.append(obj.__func__)
            elif isinstance(obj, property):
                stack += [obj.fget, obj.fset, obj.fdel]
            elif isinstance(obj, type):
                if obj.__module__ == "__main__":
                    stack += list(obj.__bases__) + list(vars(obj).values())
            elif isinstance(obj, dict):
                stack += itertools.islice(obj.values(), 100)
            elif isinstance(obj, (list, tuple, set, frozenset)):
                stack += itertools.islice(obj, 100)
            else:
                state = getattr(obj, "__dict__", None)
                if isinstance(state, dict):
                    stack += list(state.values())
                stack.append(type(obj))  # popped first
        except Exception:  # an object that will not be looked into: skip it
            continue


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018  (an empty closure cell raises)
    except ValueError:
        return False
    return True


def _code_key(fn: types.FunctionType) -> str:
    return f"{fn.__qualname__}:{fn.__code__.co_firstlineno}"


def code_origins(*roots: Any) -> dict[str, str]:
    """Where the notebook functions reachable from ``roots`` were compiled:
    ``{"Net.forward:9": "/tmp/ipykernel_41/2081851603.py"}`` (qualified name and first
    line, which cloudpickle keeps, to the filename, which it drops).

    Example::

        >>> code_origins(model, datamodule)  # doctest: +SKIP
        {'BadNet.forward:9': '/tmp/ipykernel_41/2081851603.py', ...}
    """
    out = {}
    for fn in _notebook_functions(roots):
        if fn.__code__.co_filename != DYNAMIC_CODE:
            out[_code_key(fn)] = fn.__code__.co_filename
    return out


def _refiled(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(
        _refiled(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=filename, co_consts=consts)


def restore_code_origins(roots: Iterable[Any], origins: dict[str, str] | None) -> int:
    """Give unpickled notebook functions their cell's filename back (what
    :func:`code_origins` recorded), so tracebacks and :mod:`linecache` find their source.
    Returns how many functions were refiled.

    Example::

        >>> restore_code_origins([payload["model"]], meta["code"])  # doctest: +SKIP
        6
    """
    if not origins:
        return 0
    n = 0
    for fn in list(_notebook_functions(roots)):
        filename = origins.get(_code_key(fn))
        if filename and fn.__code__.co_filename == DYNAMIC_CODE:
            fn.__code__ = _refiled(fn.__code__, filename)
            n += 1
    return n


# -- shaping ------------------------------------------------------------------------------
def _where(filename: str, lineno: int | None, cells: dict[str, str]) -> str:
    line = f", line {lineno}" if lineno is not None else ""
    if filename in cells:
        return f"{cells[filename]}{line}"
    if filename == DYNAMIC_CODE:
        return f"notebook code{line}"
    return f"{filename}{line}"


def _context(filename: str, lineno: int) -> tuple[tuple[int, str], ...]:
    lines = linecache.getlines(filename)
    if not lines or lineno > len(lines):
        return ()
    lo, hi = max(1, lineno - CONTEXT_BEFORE), min(len(lines), lineno + CONTEXT_AFTER)
    return tuple((n, lines[n - 1].rstrip("\n")) for n in range(lo, hi + 1))


def _frames(stack: traceback.StackSummary, cells: dict[str, str]) -> tuple[Frame, ...]:
    out = []
    for fs in stack:
        user = is_user_file(fs.filename, cells)
        cols = None
        colno, end_colno = getattr(fs, "colno", None), getattr(fs, "end_colno", None)
        if colno is not None and end_colno is not None and fs.end_lineno == fs.lineno:
            cols = (colno, end_colno)
        out.append(
            Frame(
                file=fs.filename,
                line=fs.lineno,
                name=fs.name,
                source=(fs.line or "").strip(),
                user=user,
                where=_where(fs.filename, fs.lineno, cells),
                context=_context(fs.filename, fs.lineno) if user and fs.lineno else (),
                cols=cols,
            )
        )
    return tuple(out)


def _headline_parts(te: traceback.TracebackException) -> tuple[str, str]:
    exc_type = getattr(te, "exc_type", None)
    name = exc_type.__name__ if exc_type is not None else "Exception"
    if issubclass(exc_type or Exception, SyntaxError) and te.filename:
        # the message alone loses where the bad syntax is: say the file and line
        return name, f"{te.msg} ({te.filename}, line {te.lineno})"
    message = "".join(te.format_exception_only()).strip()
    prefix = f"{exc_type.__module__}.{exc_type.__qualname__}" if exc_type else name
    for head in (f"{prefix}: ", f"{name}: ", f"{getattr(exc_type, '__qualname__', name)}: "):
        if message.startswith(head):
            return name, message[len(head) :]
    if message in (prefix, name):
        return name, ""
    return name, message


def shape_exception(exc: BaseException, cells: dict[str, str] | None = None) -> ShapedError:
    """Shape an exception (with its traceback) for reading.

    ``cells`` maps notebook cell filenames to their labels (what :func:`register_cells`
    returns), so those frames count as the person's and read ``Cell In[8], line 4``.

    Example::

        >>> try:
        ...     int("x")
        ... except ValueError as exc:
        ...     shape_exception(exc).headline
        "ValueError: invalid literal for int() with base 10: 'x'"
    """
    cells = cells or {}
    te = traceback.TracebackException.from_exception(exc)
    text = "".join(te.format())
    chain = []
    cur: traceback.TracebackException | None = te
    while cur is not None:
        chain.append(cur)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    causes, cause_frames = [], ()
    for earlier in chain[1:]:
        t, m = _headline_parts(earlier)
        causes.append(f"{t}: {m}" if m else t)
        if not cause_frames:
            found = _frames(earlier.stack, cells)
            if any(f.user for f in found):
                cause_frames = found
    t, m = _headline_parts(te)
    return ShapedError(
        type=t,
        message=m,
        frames=_frames(te.stack, cells),
        causes=tuple(causes),
        text=text,
        cause_frames=cause_frames,
    )


_FILE_LINE = re.compile(r'^  File "(?P<file>.+)", line (?P<line>\d+), in (?P<name>.+)$')
_CARETS = re.compile(r"^\s*[\^~]+\s*$")
_CHAIN = re.compile(
    r"^(The above exception was the direct cause of the following exception:"
    r"|During handling of the above exception, another exception occurred:)$"
)
_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")


def _parse_block(lines: list[str]) -> tuple[str, str, list[tuple[str, int, str, str]]]:
    frames: list[tuple[str, int, str, str]] = []
    i, rest_from = 0, 0
    while i < len(lines):
        m = _FILE_LINE.match(lines[i])
        if m:
            source = ""
            if i + 1 < len(lines) and lines[i + 1].startswith("    "):
                source = lines[i + 1].strip()
                i += 1
                while i + 1 < len(lines) and _CARETS.match(lines[i + 1]):
                    i += 1
            frames.append((m["file"], int(m["line"]), m["name"], source))
            rest_from = i + 1
        elif lines[i].startswith("Traceback (most recent call last)"):
            rest_from = i + 1
        i += 1
    rest = [ln for ln in lines[rest_from:] if not ln.startswith("  ")] or lines[rest_from:]
    tail = "\n".join(lines[rest_from:]).strip()
    first = rest[0].strip() if rest else ""
    m = _EXC_LINE.match(first)
    if m and (frames or m["msg"] is not None):
        name = m["type"].rsplit(".", 1)[-1]
        message = tail[len(first) :].strip()
        head = (m["msg"] or "").strip()
        return name, (head + ("\n" + message if message else "")).strip(), frames
    return "", tail, frames


def shape_text(text: str, cells: dict[str, str] | None = None) -> ShapedError:
    """Shape a traceback stored as text (runs recorded before structured errors, or a
    message that is not a traceback at all, such as ``Run lost: ...``).

    Example::

        >>> shaped = shape_text(
        ...     'Traceback (most recent call last):\\n'
        ...     '  File "/x/site-packages/lightning/trainer.py", line 5, in fit\\n'
        ...     '    self._run()\\n'
        ...     '  File "/home/me/model.py", line 9, in training_step\\n'
        ...     '    raise ValueError("bad batch")\\n'
        ...     'ValueError: bad batch\\n'
        ... )
        >>> shaped.headline, [f.where for f in shaped.user_frames], shaped.hidden
        ('ValueError: bad batch', ['/home/me/model.py, line 9'], 1)
    """
    cells = cells or {}
    lines = (text or "").rstrip("\n").splitlines()
    blocks: list[list[str]] = [[]]
    for line in lines:
        if _CHAIN.match(line.strip()):
            blocks.append([])
        else:
            blocks[-1].append(line)
    parsed = [_parse_block(b) for b in blocks if any(s.strip() for s in b)]
    if not parsed:
        return ShapedError(type="", message="", text=text or "")

    def frames_of(raw: list[tuple[str, int, str, str]]) -> tuple[Frame, ...]:
        out = []
        for file, line, name, source in raw:
            user = is_user_file(file, cells)
            out.append(
                Frame(
                    file=file,
                    line=line,
                    name=name,
                    source=source,
                    user=user,
                    where=_where(file, line, cells),
                    context=((line, source),) if user and source else (),
                )
            )
        return tuple(out)

    t, m, raw = parsed[-1]
    causes, cause_frames = [], ()
    for ct, cm, craw in reversed(parsed[:-1]):
        causes.append(f"{ct}: {cm}" if ct and cm else (ct or cm))
        if not cause_frames:
            found = frames_of(craw)
            if any(f.user for f in found):
                cause_frames = found
    return ShapedError(
        type=t,
        message=m,
        frames=frames_of(raw),
        causes=tuple(causes),
        text=text,
        cause_frames=cause_frames,
    )


def shape_stored(error: str | None, info: dict[str, Any] | None) -> ShapedError | None:
    """The shaped failure of a stored run: from its structured ``error_info`` when the
    worker recorded one, else parsed from the ``error`` text; None without an error.

    Example::

        >>> shape_stored("Run lost: its worker process ended without a word.", None).headline
        'Run lost: its worker process ended without a word.'
    """
    if not error and not info:
        return None
    if info:
        return ShapedError.from_json(info, error or "")
    return shape_text(error or "")


# -- rendering ----------------------------------------------------------------------------
def _library_summary(shaped: ShapedError) -> str:
    """``27 frames in Lightning, torch and jupyter_ext`` ('' when nothing is folded)."""
    n = shaped.hidden
    if not n:
        return ""
    names = []
    for f in shaped.frames:
        if f.user:
            continue
        parts = Path(f.file).parts
        if "lightning" in parts or "lightning_fabric" in parts or "pytorch_lightning" in parts:
            names.append("Lightning")
        elif "torch" in parts:
            names.append("torch")
        elif f.file.startswith(os.path.join(_PACKAGE_DIR, "")):
            names.append("jupyter_ext")
        elif f.file.startswith(_STDLIB):
            names.append("Python")
        else:
            names.append("other libraries")
    kinds = sorted(set(names), key=lambda k: -names.count(k))
    where = ", ".join(kinds[:-1]) + (" and " if len(kinds) > 1 else "") + kinds[-1]
    return f"{n} frame{'s' if n != 1 else ''} in {where}"


def _raised_in(shaped: ShapedError) -> Frame | None:
    """Where a failure without user frames was raised: the innermost frame."""
    return shaped.frames[-1] if shaped.frames else None


def render_text(shaped: ShapedError) -> str:
    """The shaped failure as plain text: headline, the person's frames with source, and
    a line saying what is folded.

    Example::

        >>> print(render_text(shape_text("ValueError: bad\\n")))
        ValueError: bad
    """
    out = [shaped.headline]
    for cause in shaped.causes:
        out.append(f"  (caused by {cause})")
    frames = shaped.user_frames
    if frames:
        out += ["", "Your code (most recent call last):"]
        for f in frames:
            out.append(f"  {f.where}, in {f.name}")
            context = f.context or (((f.line or 0, f.source),) if f.source else ())
            width = len(str(max((n for n, _ in context), default=0)))
            for n, text in context:
                mark = "--->" if n == f.line else "    "
                out.append(f"  {mark} {n:>{width}} {text}")
    elif shaped.frames:
        last = _raised_in(shaped)
        if last is not None:
            out += ["", f"raised in {last.where}, in {last.name}"]
    folded = _library_summary(shaped)
    if folded:
        out += ["", f"({folded} not shown: Run.error has the full traceback)"]
    return "\n".join(out)


_HEAD_STYLE = (
    "color:#c62828;font-weight:bold;font-family:var(--jp-code-font-family,monospace);"
    "white-space:pre-wrap;margin:2px 0 6px 0"
)
_PRE_STYLE = (
    "margin:2px 0 6px 0;padding:4px 6px;background:var(--jp-layout-color2,#f5f5f5);"
    "white-space:pre-wrap;font-size:90%"
)


def _frame_html(f: Frame) -> str:
    context = f.context or (((f.line or 0, f.source),) if f.source else ())
    width = len(str(max((n for n, _ in context), default=0)))
    rows = []
    for n, text in context:
        here = n == f.line
        code = html.escape(text)
        if here and f.cols and len(text) >= f.cols[1] > f.cols[0]:
            a, b = f.cols
            code = (
                html.escape(text[:a])
                + "<span style='background:#ffcdd2;color:#b71c1c'>"
                + html.escape(text[a:b])
                + "</span>"
                + html.escape(text[b:])
            )
        mark = "<span style='color:#c62828'>---&gt;</span>" if here else "    "
        rows.append(f"{mark} <span style='color:#888'>{n:>{width}}</span> {code}")
    where = (
        f"<div class='jx-frame-where' style='color:#555'>{html.escape(f.where)}, in "
        f"<b>{html.escape(f.name)}</b></div>"
    )
    body = f"<pre style='{_PRE_STYLE}'>" + "\n".join(rows) + "</pre>" if rows else ""
    return f"<div class='jx-frame'>{where}{body}</div>"


def render_html(shaped: ShapedError) -> str:
    """The shaped failure as HTML: the headline in red, the person's frames with their
    source (the failing line marked), and the full traceback folded in a ``<details>``.

    Example::

        >>> text = '  File "/x/site-packages/a.py", line 1, in f\\nValueError: v'
        >>> "<details" in render_html(shape_text(text))
        True
    """
    parts = [
        "<div class='jx-error' style='border-left:3px solid #c62828;padding:2px 10px;"
        "margin:4px 0'>",
        f"<div class='jx-error-head' style='{_HEAD_STYLE}'>{html.escape(shaped.headline)}</div>",
    ]
    for cause in shaped.causes:
        parts.append(
            f"<div class='jx-error-cause' style='color:#666'>caused by "
            f"<code>{html.escape(cause)}</code></div>"
        )
    frames = shaped.user_frames
    if frames:
        parts.append(
            "<div style='color:#666;font-size:90%'>in your code (most recent call last):</div>"
        )
        parts += [_frame_html(f) for f in frames]
    elif shaped.frames:
        last = _raised_in(shaped)
        if last is not None:
            parts.append(
                f"<div class='jx-raised-in' style='color:#666'>raised in "
                f"{html.escape(last.where)}, in {html.escape(last.name)}</div>"
            )
    if shaped.text and shaped.frames:
        folded = _library_summary(shaped)
        summary = "full traceback" + (f" · {folded}" if folded else "")
        parts.append(
            f"<details class='jx-error-full'><summary style='color:#666;cursor:pointer'>"
            f"{html.escape(summary)}</summary>"
            f"<pre style='{_PRE_STYLE}'>{html.escape(shaped.text)}</pre></details>"
        )
    parts.append("</div>")
    return "".join(parts)
