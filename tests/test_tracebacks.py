"""Failed runs lead with the error: traceback shaping, unit by unit and in a real notebook."""

from __future__ import annotations

import json
import linecache
import re
import traceback

import cloudpickle
import pytest

from jupyter_ext.training.tracebacks import (
    DYNAMIC_CODE,
    code_origins,
    is_user_file,
    notebook_cells,
    register_cells,
    render_html,
    render_text,
    restore_code_origins,
    shape_exception,
    shape_stored,
    shape_text,
)

pytestmark = pytest.mark.timeout(300)

CELL_FILE = "/tmp/ipykernel_0/2081851603.py"  # how ipykernel names a cell's code
CELL = """\
import json

def hook(obj):
    return obj["missing"]

def parse(text):
    return json.loads(text, object_hook=hook)
"""


def _cell_namespace(filename: str = CELL_FILE, number: int = 7) -> dict:
    """Run CELL as IPython runs a cell: compiled under its cell filename, source in
    linecache (here put there by register_cells, as the worker does)."""
    labels = register_cells({filename: {"cell": number, "source": CELL}})
    assert labels == {filename: f"Cell In[{number}]"}
    ns: dict = {"__name__": "__main__"}
    exec(compile(CELL, filename, "exec"), ns)
    return ns


# A library of our own making, so that a traceback starts and goes on in code that is
# not the person's (as in the worker, where the outermost frames are Lightning's).
LIBRARY = """\
def catch(fn, *args):
    try:
        fn(*args)
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")

def reraise(fn, *args):
    try:
        fn(*args)
    except KeyError as exc:
        raise RuntimeError("could not read the config") from exc
"""
_lib: dict = {}
exec(compile(LIBRARY, "/opt/venv/lib/python3/site-packages/harness.py", "exec"), _lib)
_raise, _reraise = _lib["catch"], _lib["reraise"]


def test_an_exception_is_shaped_error_first_then_the_cells_lines_then_folded_frames():
    ns = _cell_namespace()
    exc = _raise(ns["parse"], '{"a": 1}')
    shaped = shape_exception(exc, {CELL_FILE: "Cell In[7]"})

    assert shaped.headline == "KeyError: 'missing'"
    own = [(f.where, f.name, f.source) for f in shaped.user_frames if f.file == CELL_FILE]
    assert own == [
        ("Cell In[7], line 7", "parse", "return json.loads(text, object_hook=hook)"),
        ("Cell In[7], line 4", "hook", 'return obj["missing"]'),
    ]
    hook = shaped.user_frames[-1]
    assert hook.context == ((2, ""), (3, "def hook(obj):"), (4, '    return obj["missing"]'),
                            (5, ""))  # fmt: skip
    assert hook.cols is not None  # the failing expression, marked on its line
    assert [f.name for f in shaped.user_frames] == ["parse", "hook"]
    folded = [f.file.rsplit("/", 1)[-1] for f in shaped.frames if not f.user]
    assert folded == ["harness.py", "__init__.py", "decoder.py", "decoder.py"]
    assert shaped.text == "".join(traceback.format_exception(exc))

    page = render_html(shaped)
    head, folded = page.index("KeyError: &#x27;missing&#x27;"), page.index("<details")
    assert head < page.index("Cell In[7], line 4") < folded
    assert "obj[&quot;missing&quot;]" in page[:folded]
    assert "json/decoder.py" not in page[:folded] and "json/decoder.py" in page[folded:]
    assert "full traceback · 4 frames in Python and other libraries" in page

    text = render_text(shaped)
    assert text.splitlines()[0] == "KeyError: 'missing'"
    assert '---> 4     return obj["missing"]' in text
    assert "Run.error has the full traceback" in text


def test_stored_text_is_shaped_like_the_exception_it_came_from():
    ns = _cell_namespace()
    exc = _raise(ns["parse"], '{"a": 1}')
    live = shape_exception(exc, {CELL_FILE: "Cell In[7]"})
    parsed = shape_text(live.text, {CELL_FILE: "Cell In[7]"})
    assert parsed.headline == live.headline
    assert [(f.where, f.source) for f in parsed.user_frames] == [
        (f.where, f.source) for f in live.user_frames
    ]
    assert parsed.hidden == live.hidden
    # what the store keeps survives JSON, and shape_stored prefers it to the text
    info = json.loads(json.dumps(live.to_json()))
    assert shape_stored(live.text, info) == live
    assert shape_stored(live.text, None).headline == live.headline
    assert shape_stored(None, None) is None


def test_messages_that_are_not_tracebacks_and_multiline_messages():
    lost = shape_text("Run lost: its worker process ended without a word (killed, out of memory).")
    assert lost.type == "" and lost.headline.startswith("Run lost: its worker")
    assert "<details" not in render_html(lost)  # nothing to fold
    assert render_text(lost) == lost.headline

    text = (
        "Traceback (most recent call last):\n"
        '  File "/v/lib/python3.11/site-packages/lightning/pytorch/trainer/trainer.py", line 9, '
        "in fit\n"
        "    self._run()\n"
        "    ^^^^^^^^^^^\n"
        "lightning.fabric.utilities.exceptions.MisconfigurationException: No `training_step()`"
        " method defined.\nDefine one in your LightningModule.\n"
    )
    shaped = shape_text(text)
    assert shaped.type == "MisconfigurationException"
    assert shaped.message == (
        "No `training_step()` method defined.\nDefine one in your LightningModule."
    )
    assert not shaped.user_frames and shaped.hidden == 1
    assert "raised in /v/lib/python3.11/site-packages/lightning" in render_text(shaped)


def test_chained_exceptions_name_their_causes_and_keep_the_users_frames():
    ns = _cell_namespace()
    # only the cause went through the cell: its frames are the ones shown
    exc = _raise(_reraise, ns["parse"], '{"a": 1}')
    shaped = shape_exception(exc, {CELL_FILE: "Cell In[7]"})
    assert shaped.headline == "RuntimeError: could not read the config"
    assert shaped.causes == ("KeyError: 'missing'",)
    assert any(f.where == "Cell In[7], line 4" for f in shaped.user_frames)
    assert "caused by <code>KeyError: &#x27;missing&#x27;</code>" in render_html(shaped)
    parsed = shape_text(shaped.text, {CELL_FILE: "Cell In[7]"})
    assert parsed.headline == shaped.headline and parsed.causes == shaped.causes


def test_a_syntax_error_says_where():
    exc = _raise(compile, "x = 1\ny = (\n", CELL_FILE, "exec")
    shaped = shape_exception(exc, {CELL_FILE: "Cell In[3]"})
    assert shaped.type == "SyntaxError"
    assert "was never closed" in shaped.message and "line 2" in shaped.message


def test_whose_code_a_file_is():
    import lightning
    import torch

    assert not is_user_file(lightning.__file__) and not is_user_file(torch.__file__)
    assert not is_user_file(json.__file__)  # the standard library
    assert not is_user_file(register_cells.__code__.co_filename)  # the toolkit itself
    assert is_user_file(__file__)  # a module of the person's own
    assert is_user_file(DYNAMIC_CODE) and is_user_file("<ipython-input-3-abc>")
    assert not is_user_file("<frozen runpy>")


def test_notebook_functions_get_their_cell_back_after_cloudpickle():
    """cloudpickle drops the filename of code it sends by value; the worker restores it
    from what the kernel recorded, so the cell's lines show in the worker's traceback."""
    source = (
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.scale = lambda x: x * 2\n"
        "    def forward(self, x):\n"
        "        raise ValueError(f'bad input {x}')\n"
    )
    filename = "/tmp/ipykernel_0/77.py"
    register_cells({filename: {"cell": 4, "source": source}})
    ns: dict = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), ns)
    model = ns["Net"]()
    origins = code_origins(model)
    assert origins["Net.forward:6"] == filename and origins["Net.__init__:3"] == filename

    clone = cloudpickle.loads(cloudpickle.dumps(model))
    assert type(clone).forward.__code__.co_filename == DYNAMIC_CODE  # what the worker gets
    assert restore_code_origins([clone], origins) >= 2
    assert type(clone).forward.__code__.co_filename == filename
    shaped = shape_exception(_raise(clone.forward, 3), {filename: "Cell In[4]"})
    (frame,) = [f for f in shaped.user_frames if f.name == "forward"]
    assert frame.where == "Cell In[4], line 7"
    assert frame.source == "raise ValueError(f'bad input {x}')"
    assert linecache.getline(filename, 7).strip() == frame.source
    # without the record (a resumed run), the frame is still the person's, just unnamed
    bare = cloudpickle.loads(cloudpickle.dumps(model))
    shaped = shape_exception(_raise(bare.forward, 3))
    assert [f.where for f in shaped.user_frames if f.name == "forward"] == ["notebook code, line 7"]


def test_cells_outside_ipython_are_none():
    assert notebook_cells(shell=object()) == {}


# -- in a real notebook -------------------------------------------------------------------
CLASS_CELL = """\
import torch, lightning as L
from torch.utils.data import DataLoader, TensorDataset

class BadNet(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(20, 2)  # wrong input size: the data has 30 features

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

data = DataLoader(TensorDataset(torch.randn(64, 30), torch.randint(0, 2, (64,))), batch_size=16)
"""

INLINE_CELL = """\
%%train --name inline --max-epochs 1 --train-dataloaders data

class Inline(BadNet):
    def training_step(self, batch, batch_idx):
        raise ValueError("inline failure")

model = Inline()
"""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _error_text(cell) -> str:
    return "\n".join(_ANSI.sub("", "\n".join(e["traceback"])) for e in cell.errors)


def test_a_failed_run_in_a_notebook_leads_with_the_error_and_shows_the_cells(start_kernel):
    k = start_kernel()
    k.run(CLASS_CELL).ok()  # In[2]: the class, defined in its own cell
    k.run("%%train --name bad --max-epochs 1 --train-dataloaders data\nmodel = BadNet()").ok()
    k.run(INLINE_CELL).ok()  # In[4]: a class defined in the %%train cell itself
    cell = k.run(
        "import jupyter_ext\n"
        "bad = jupyter_ext.get_run('bad').wait(180)\n"
        "inline = jupyter_ext.get_run('inline').wait(180)\n"
        "print(bad.status, inline.status)"
    ).ok()
    assert cell.stdout.split() == ["failed", "failed"]

    cell = k.run(
        "import json\nrow = bad.row\n"
        "own = [(f['where'], f['name'], f['source']) for f in row.error_info['frames'] if f['user']]\n"
        "mon = bad.monitor()\n"
        "print(json.dumps({'own': own, 'error': bad.error, 'html': mon.error.value,\n"
        "    'bar': mon.bar_label.value, 'head': row.error_info['type'] + ': ' + row.error_info['message'],\n"
        "    'inline': [(f['where'], f['source']) for f in inline.row.error_info['frames'] if f['user']]}))"
    ).ok()
    seen = json.loads(cell.stdout)
    assert (
        seen["head"] == "RuntimeError: mat1 and mat2 shapes cannot be multiplied (16x30 and 20x2)"
    )
    # the person's frames: the class's cell, with the right cell and line numbers
    assert seen["own"] == [
        ["Cell In[2], line 14", "training_step",
         "return torch.nn.functional.cross_entropy(self(x), y)"],
        ["Cell In[2], line 10", "forward", "return self.net(x)"],
    ]  # fmt: skip
    # numbered as the notebook shows the %%train cell (its first line is line 1)
    assert seen["inline"] == [["Cell In[4], line 5", 'raise ValueError("inline failure")']]
    # Run.error keeps every frame, now with the cell's source lines
    assert "lightning/pytorch/trainer/trainer.py" in seen["error"]
    assert "    return self.net(x)\n" in seen["error"]
    # the monitor: the error first, the cell's lines next, Lightning folded
    page = seen["html"]
    assert page.index("RuntimeError: mat1 and mat2") < page.index("Cell In[2], line 10")
    assert page.index("Cell In[2], line 10") < page.index("<details")
    assert "trainer.py" not in page[: page.index("<details")]
    assert re.search(r"full traceback · \d+ frames in Lightning, torch", page)
    assert "failed after" in seen["bar"] and "epoch 1/1" in seen["bar"]

    cell = k.run("bad.wait(raise_on_failure=True)")
    (error,) = cell.errors
    assert error["ename"] == "RunFailed"
    assert "failed:\nRuntimeError: mat1 and mat2 shapes" in error["evalue"]
    assert "Cell In[2], line 10, in forward" in error["evalue"]


def test_errors_in_a_train_cell_itself_have_the_cells_line_numbers(start_kernel):
    k = start_kernel()
    cell = k.run("%%train --max-epochs 1\nx = 1\ny = (\nz = 3\n")
    text = _error_text(cell)
    assert cell.errors[0]["ename"] == "SyntaxError"
    assert "Cell In[2], line 3" in text and "y = (" in text  # In[1] loaded the extension
    cell = k.run("%%train --max-epochs 1\n\nx = 1\ny = 1 / 0\n")  # a blank line counts too
    text = _error_text(cell)
    assert cell.errors[0]["ename"] == "ZeroDivisionError"
    assert "Cell In[3], line 4" in text and "----> 4 y = 1 / 0" in text
    k.run("import jupyter_ext; assert len(jupyter_ext.runs()) == 0").ok()  # nothing launched
