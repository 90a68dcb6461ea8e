"""LoRA fine-tuning of an open causal LM as an ordinary run: finetune(), %%finetune, the
data formats and their loss masks, checkpoints of the adapter only, load_model, resume
and export. Everything runs on a tiny Llama built here; nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import jupyter_ext
from jupyter_ext.llm import data as D
from jupyter_ext.llm.export import is_finetune_run
from jupyter_ext.llm.tiny import build_tiny_llama
from jupyter_ext.store import open_store

pytestmark = pytest.mark.timeout(240)

FACTS = [
    ("What is Ada's cat called?", "Pixel."),
    ("Where does Bo live?", "In Lisbon."),
    ("What colour is Cy's car?", "Green."),
    ("How old is Dee?", "Forty two."),
    ("What does Eve play?", "The cello."),
    ("Who wrote Blue Tides?", "Fay Moss."),
    ("What is Gus afraid of?", "Spiders."),
    ("When was Hal born?", "In 1990."),
]
CHATS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    for q, a in FACTS
]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("llm") / "tiny", [f"{q} {a}" for q, a in FACTS])


@pytest.fixture(scope="module")
def tok(base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base)


@pytest.fixture
def ws(workspace, monkeypatch):
    """The workspace, with workers that never reach the network and use one thread (on a
    busy two-core machine, torch's default of a thread per core is ten times slower for a
    model this small)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return workspace


# -- data: formats and loss masks ------------------------------------------------------------
def _learned(tok, example):
    return tok.decode([t for t in example["labels"] if t != D.IGNORE])


def test_chat_loss_covers_assistant_turns_only_with_or_without_generation_markers(tok):
    record = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is Ada's cat called?"},
            {"role": "assistant", "content": "Pixel."},
            {"role": "user", "content": "And Bo's home?"},
            {"role": "assistant", "content": "Lisbon."},
        ]
    }
    marked = D.encode(record, tok, 512)
    assert _learned(tok, marked) == "Pixel.<|im_end|>Lisbon.<|im_end|>"
    full = tok.apply_chat_template(record["messages"], tokenize=True, return_dict=True)
    assert marked["input_ids"] == list(full["input_ids"])
    # the same template without its {% generation %} markers: masks from rendered prefixes
    plain = tok.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    original = tok.chat_template
    try:
        tok.chat_template = plain
        assert not D.has_generation_markers(tok)
        assert D.encode(record, tok, 512) == marked
    finally:
        tok.chat_template = original


def test_prompt_completion_and_text_masks(tok):
    ex = D.encode({"prompt": "Q: Ada's cat?", "completion": " Pixel."}, tok, 512)
    n_prompt = len(tok("Q: Ada's cat?")["input_ids"])
    assert ex["labels"][:n_prompt] == [D.IGNORE] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["input_ids"][-1] == tok.eos_token_id  # the model learns to stop
    for text in ("Ada has a cat.", {"text": "Ada has a cat."}):
        ex = D.encode(text, tok, 512)
        assert ex["labels"] == ex["input_ids"] and D.IGNORE not in ex["labels"]
    short = D.encode({"text": "Ada has a cat called Pixel. " * 20}, tok, 16)
    assert len(short["input_ids"]) == 16
    batch = D.collate([short, ex], pad_id=tok.pad_token_id)
    n = len(ex["input_ids"])
    assert batch["labels"][1, n:].eq(D.IGNORE).all() and batch["labels"][1, :n].ne(D.IGNORE).all()
    assert batch["attention_mask"].sum().item() == 16 + n
    with pytest.raises(ValueError, match=r"record 0: nothing left to learn within max_length=4"):
        D.encode({"prompt": "a long prompt that fills it all", "completion": "x"}, tok, 4)


def test_bad_records_are_refused_with_their_index(tok):
    records = [CHATS[0], CHATS[1], CHATS[2], {"question": "x"}]
    with pytest.raises(ValueError, match=r"record 3: keys \['question'\]; expected .*messages"):
        D.encode_all(records, tok, 64)
    with pytest.raises(ValueError, match="record 1: 'completion' is missing"):
        D.encode_all(["fine", {"prompt": "p"}], tok, 64)
    with pytest.raises(ValueError, match="record 2: got int"):
        D.encode_all(["a", "b", 5], tok, 64)
    no_answer = {"messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(ValueError, match="record 1: no assistant message"):
        D.encode_all([CHATS[0], no_answer], tok, 64)


def test_dataframe_jsonl_and_dataset_give_the_same_records(tmp_path):
    import datasets
    import pandas as pd

    pairs = [{"prompt": q, "completion": " " + a} for q, a in FACTS]
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    assert D.load_records(pd.DataFrame(pairs)) == pairs
    assert D.load_records(path) == D.load_records(str(path)) == pairs
    assert D.load_records(datasets.Dataset.from_list(pairs)) == pairs
    mixed = pd.DataFrame([{"text": "a text"}, {"prompt": "p", "completion": "c"}])
    assert D.load_records(mixed) == [{"text": "a text"}, {"prompt": "p", "completion": "c"}]
    assert D.split(list(range(10)), 0.2) == D.split(list(range(10)), 0.2)
    with pytest.raises(ValueError, match="not a file"):
        D.load_records(tmp_path / "missing.jsonl")


def test_refusals_before_launch(ws, base, tmp_path):
    from transformers import AutoTokenizer

    store = open_store()
    with pytest.raises(ValueError, match=r"data: record 2: keys \['q'\]"):
        jupyter_ext.finetune(base, [CHATS[0], CHATS[1], {"q": "?"}])
    # a base whose tokenizer has no chat template: the error says how to set one
    bare = tmp_path / "bare"
    build_tiny_llama(bare)
    t = AutoTokenizer.from_pretrained(bare)
    t.chat_template = None
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    t.save_pretrained(bare)
    assert not AutoTokenizer.from_pretrained(bare).chat_template
    with pytest.raises(ValueError, match=r"no chat template.*tokenizer\.chat_template = "):
        jupyter_ext.finetune(bare, CHATS)
    with pytest.raises(ValueError, match=r"not in the Hugging Face cache.*offline"):
        jupyter_ext.finetune("nobody-here/no-such-model-xyz", CHATS)
    with pytest.raises(ValueError, match="not a model directory"):
        jupyter_ext.finetune(str(tmp_path / "nowhere"), CHATS)
    with pytest.raises(ValueError, match="lora_r=0"):
        jupyter_ext.finetune(base, CHATS, lora_r=0)
    assert store.list_runs() == []  # nothing was launched


# -- runs ------------------------------------------------------------------------------------
def _chat(model, tok, question):
    """A greedy reply, formatted as the fresh-process check below does."""
    text = tok.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(
            **enc, max_new_tokens=32, do_sample=False, pad_token_id=tok.pad_token_id
        )
    return tok.decode(ids[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def _answers_in_fresh_process(model_dir, questions):
    script = textwrap.dedent(
        """
        import json, sys
        from transformers import AutoModelForCausalLM, AutoTokenizer
        path, questions = sys.argv[1], json.loads(sys.argv[2])
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        out = []
        for q in questions:
            text = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                           add_generation_prompt=True)
            enc = tok(text, return_tensors="pt")
            ids = model.generate(**enc, max_new_tokens=32, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            out.append(tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(model_dir), json.dumps(questions)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_finetune_learns_the_facts_as_an_ordinary_run_and_exports(ws, base, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

    # 8 facts x 19 = 19 batches of 8 per epoch; 152 steps (8 epochs), validated each epoch
    run = jupyter_ext.finetune(
        base, CHATS * 19, val_data=CHATS, learning_rate=3e-3, max_steps=152,
        name="facts", experiment="llm",
    )  # fmt: skip
    assert run.status in ("queued", "running")  # returned at once: the kernel is free
    run.wait(timeout=200, raise_on_failure=True)
    assert is_finetune_run(run) and is_finetune_run(run.row)
    row = jupyter_ext.runs(experiment="llm").iloc[0]
    assert row["name"] == "facts" and row["status"] == "succeeded"
    assert {"train_loss", "train_ppl", "val_loss", "val_ppl", "tokens_per_s"} <= set(row["metrics"])
    assert row["hparams"]["lora_r"] == 16 and row["hparams"]["base"] == str(base)
    m = run.metrics
    losses = m[m.key == "val_loss"].value
    assert len(losses) == 8 and losses.iloc[-1] < losses.iloc[0]
    ppl = m[m.key == "val_ppl"].value
    assert abs(ppl.iloc[-1] - torch.tensor(losses.iloc[-1]).exp().item()) < 1e-3 * ppl.iloc[-1]
    assert (m[m.key == "tokens_per_s"].value > 0).all()

    # samples: the first 3 validation prompts, before training (step 0) and at each validation
    samples = run.row.samples
    assert [s["step"] for s in samples] == [0, *range(19, 153, 19)]
    assert [s["prompt"] for s in samples[-1]["samples"]] == [q for q, _ in FACTS[:3]]
    assert [s["output"] for s in samples[-1]["samples"]] == [a for _, a in FACTS[:3]]

    # checkpoints hold the adapter (and its optimizer state) only
    ckpt = torch.load(run.best_checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["state_dict"] and all("lora_" in k for k in ckpt["state_dict"])
    assert os.path.getsize(run.best_checkpoint) < os.path.getsize(base / "model.safetensors")

    # load_model(): the transformers model with the adapter merged, reciting the facts
    model = run.load_model()
    assert isinstance(model, PreTrainedModel) and not isinstance(model, PeftModel)
    tok = AutoTokenizer.from_pretrained(base)
    answers = [_chat(model, tok, q) for q, _ in FACTS]
    assert answers == [a for _, a in FACTS]

    merged = run.export(tmp_path / "merged")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in merged.iterdir()
    }
    questions = [q for q, _ in FACTS]
    assert _answers_in_fresh_process(merged, questions) == answers

    adapter = run.export(tmp_path / "adapter", merged=False)
    names = {p.name for p in adapter.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    assert "model.safetensors" not in names
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base)
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).eval()
    # the same greedy answers through the adapter loaded by peft
    assert _chat(peft, tok, FACTS[0][0]) == FACTS[0][1]


def test_finetune_magic_in_ipython_then_resume(ws, base):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.run_line_magic("load_ext", "jupyter_ext")
        shell.user_ns["FACTS"] = FACTS
        result = shell.run_cell(
            f"%%finetune {base} --name cell --lora-r 8 --learning-rate 1e-3 --max-steps 3 "
            "--batch-size 4 --val-fraction 0.25 --wait\n"
            "data = [{'prompt': q, 'completion': ' ' + a} for q, a in FACTS]\n",
            store_history=True,
        )
        assert result.success, result.error_in_exec
        run = shell.user_ns["_"]  # what the cell displayed (its Out[])
        assert run.name == "cell" and run.status == "succeeded", run.error
        assert run.hparams["lora_r"] == 8 and run.hparams["val_examples"] == 2
        assert run.progress["step"] == 3
        assert len(run.row.samples[-1]["samples"]) == 2  # both held-out prompts
        with pytest.raises(UsageError, match="needs the base first"):
            shell.run_cell_magic("finetune", "--max-steps 3", "data = []")
        with pytest.raises(UsageError, match=r"the cell does not assign `data`.*--data data"):
            shell.run_cell_magic("finetune", str(base), "records = []")
        with pytest.raises(UsageError, match="Did you mean `--max-steps`"):
            shell.run_cell_magic("finetune", f"{base} --max-step 3", "data = ['x']")
    finally:
        InteractiveShell.clear_instance()

    # resume: the new run starts from the adapter in the checkpoint and goes on counting
    more = run.resume(max_steps=5, wait=True)
    assert more.status == "succeeded", more.error
    assert more.progress["step"] == 5
    before = torch.load(run.last_checkpoint, map_location="cpu", weights_only=False)
    after = torch.load(more.last_checkpoint, map_location="cpu", weights_only=False)
    assert before["state_dict"].keys() == after["state_dict"].keys()
    # (a checkpoint that did not fit the adapter would have failed the run as it loaded)
    assert more.metrics.query("key == 'train_loss'").step.min() >= before["global_step"] > 0


def test_sample_prompts_from_validation_records_or_given(tok):
    from jupyter_ext.llm.finetune import _prompts

    shown, text = D.sample_prompt(CHATS[0], tok)
    assert shown == FACTS[0][0] and text.endswith("<|im_start|>assistant\n")
    assert D.sample_prompt({"prompt": "Q?", "completion": "A"}, tok) == ("Q?", "Q?")
    assert D.sample_prompt("one two three four", tok) == ("one two", "one two")
    assert [p for p, _ in _prompts(None, CHATS[2:6], CHATS, tok, True)] == [
        q for q, _ in FACTS[2:5]
    ]
    given = _prompts(["Who is Ada?"], [], CHATS, tok, True)
    assert given == [D.sample_prompt([{"role": "user", "content": "Who is Ada?"}], tok)]
    assert _prompts("Once upon", [], ["text"], tok, False) == [("Once upon", "Once upon")]
    with pytest.raises(ValueError, match=r"sample_prompts\[0\] is a int"):
        _prompts([3], [], CHATS, tok, True)
