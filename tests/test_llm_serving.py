"""Serving a causal LM over the OpenAI API: real server processes on 127.0.0.1, the official
``openai`` client as the black box, a tiny Llama and two LoRA adapters built offline."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from helpers import wait_for

import jupyter_ext
from jupyter_ext.procs import group_members, stop_group
from jupyter_ext.store import open_store

PROMPTS = [
    "The quick brown fox",
    "A model learns from",
    "Numbers: 0 1 2",
    "What is the capital",
    "Colours: red green",
    "Questions and answers",
    "user assistant system",
    "It is a city by",
]


def _adapter(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter with random, non-zero A and B, so it changes the model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(
        r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # peft's random init leaves B small; make it matter
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    from jupyter_ext.config import ToolkitConfig

    ws = tmp_path_factory.mktemp("llm") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_EXT_HOME", str(ws))
        ToolkitConfig.clear_instance()
        yield ws
        from jupyter_ext.deployment.textgen.spare import pool

        pool().shutdown()  # this process's warm spare text server, if one was started
        for r in open_store(ws).list_deployments():
            if r.pid:
                stop_group(r.pid, r.pid_started)
                assert group_members(r.pid) == [], f"{r.name} left processes behind"
    ToolkitConfig.clear_instance()


@pytest.fixture(scope="module")
def base(home):
    from jupyter_ext.llm.tiny import build_tiny_llama

    return build_tiny_llama(home.parent / "tiny-llama")


@pytest.fixture(scope="module")
def dep(home, base):
    """One deployment for most tests: the base and two adapters, bound off loopback (so
    with a generated API key)."""
    a = _adapter(base, home.parent / "adapter-a", 1)
    b = _adapter(base, home.parent / "adapter-b", 2)
    return jupyter_ext.deploy(
        base, name="tiny", adapters={"a": a, "b": b}, host="0.0.0.0", verbose=False
    )


@pytest.fixture(scope="module")
def client(dep):
    return openai.OpenAI(base_url=f"{dep.url}/v1", api_key=dep.api_key, max_retries=0)


def _chat(client, content, model="tiny", **kw):
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **kw
    )


def _streamed_chat(client, content, model="tiny", **kw):
    chunks = list(_chat(client, content, model, stream=True, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    return text, finish, chunks


def test_models_lists_the_deployment_and_its_adapters(client, dep):
    assert [m.id for m in client.models.list().data] == ["tiny", "a", "b"]
    assert dep.models == ["tiny", "a", "b"] and dep.is_text


def test_whole_and_streamed_give_the_same_greedy_text(client):
    whole = _chat(client, "Hello there", max_tokens=12, temperature=0)
    text, finish, chunks = _streamed_chat(
        client, "Hello there", max_tokens=12, temperature=0,
        stream_options={"include_usage": True},
    )  # fmt: skip
    assert text == whole.choices[0].message.content and text
    assert whole.choices[0].finish_reason == "length" and finish == ["length"]
    assert whole.usage.completion_tokens == 12
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + 12
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    done = client.completions.create(model="tiny", prompt="The quick", max_tokens=10, temperature=0)
    pieces = client.completions.create(
        model="tiny", prompt="The quick", max_tokens=10, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in pieces) == done.choices[0].text
    assert done.usage.completion_tokens == 10 and done.choices[0].finish_reason == "length"


def test_stop_strings_cut_the_answer(client):
    full = (
        client.completions.create(model="tiny", prompt="Numbers: 0 1", max_tokens=24, temperature=0)
        .choices[0]
        .text
    )
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    expected = full[: full.index(stop)]
    for stops in (stop, [stop, "\u2603never"]):
        r = client.completions.create(
            model="tiny", prompt="Numbers: 0 1", max_tokens=24, temperature=0, stop=stops
        )
        assert r.choices[0].text == expected and r.choices[0].finish_reason == "stop"
        streamed = list(
            client.completions.create(
                model="tiny", prompt="Numbers: 0 1", max_tokens=24, temperature=0, stop=stops,
                stream=True,
            )
        )  # fmt: skip
        assert "".join(c.choices[0].text for c in streamed) == expected
        assert streamed[-1].choices[0].finish_reason == "stop"


def test_same_seed_same_sample(client):
    def sample(seed):
        return _chat(client, "Tell me", max_tokens=12, temperature=1.0, seed=seed)

    first = sample(7).choices[0].message.content
    assert sample(7).choices[0].message.content == first
    assert len({sample(s).choices[0].message.content for s in (1, 2, 3)} | {first}) > 1
    streamed, _, _ = _streamed_chat(client, "Tell me", max_tokens=12, temperature=1.0, seed=7)
    assert streamed == first

    def unseeded(i):  # OpenAI's default: sampled at temperature 1, batched by a manager
        return _chat(client, PROMPTS[i], max_tokens=12)

    greedy = _chat(client, "Tell me", max_tokens=12, temperature=0).choices[0].message.content
    near_greedy = _chat(client, "Tell me", max_tokens=12, temperature=1e-4)  # per request
    assert near_greedy.choices[0].message.content == greedy
    with ThreadPoolExecutor(8) as pool:  # a seeded request among unseeded ones, at once
        busy = [pool.submit(unseeded, i) for i in range(6)]
        seeded = [pool.submit(sample, 7) for _ in range(2)]
        assert [f.result().choices[0].message.content for f in seeded] == [first, first]
        for f in busy:
            r = f.result()
            assert r.usage.completion_tokens <= 12 and r.choices[0].finish_reason in (
                "stop",
                "length",
            )


def test_eight_concurrent_clients_get_the_answers_they_get_alone(client):
    def ask(i):
        if i % 2:
            return _streamed_chat(client, PROMPTS[i], max_tokens=16, temperature=0)[0]
        return _chat(client, PROMPTS[i], max_tokens=16, temperature=0).choices[0].message.content

    alone = [ask(i) for i in range(8)]
    barrier = threading.Barrier(8)

    def together(i):
        barrier.wait()
        return ask(i)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(together, range(8))) == alone


def test_adapters_are_separate_models_over_one_base(client):
    answers = {
        m: _chat(client, "Hello there", model=m, max_tokens=12, temperature=0)
        .choices[0]
        .message.content
        for m in ("tiny", "a", "b")
    }
    assert len(set(answers.values())) == 3, answers
    order = ["a", "tiny", "b", "a", "b", "tiny", "a", "b"]  # mixed, at once: grouped by adapter

    def ask(m):
        return _chat(client, "Hello there", model=m, max_tokens=12, temperature=0)

    with ThreadPoolExecutor(8) as pool:
        got = [r.choices[0].message.content for r in pool.map(ask, order)]
    assert got == [answers[m] for m in order]


def test_errors_have_openai_shapes(client, dep):
    with pytest.raises(openai.NotFoundError) as e:
        _chat(client, "Hi", model="nope")
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        _chat(client, "Hi", temperature=5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        _chat(client, "Hi", n=3)
    assert e.value.body["param"] == "n" and "n=1" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        _chat(client, "word " * 2000)  # longer than the model's 512 positions
    assert e.value.body["code"] == "context_length_exceeded"
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="word " * 2000)
    assert e.value.body["param"] == "prompt"
    with pytest.raises(openai.BadRequestError) as e:
        _chat(client, "Hi", max_tokens=600)
    assert e.value.body["code"] == "context_length_exceeded"
    wrong = openai.OpenAI(base_url=f"{dep.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.models.list()
    assert e.value.body["code"] == "invalid_api_key"
    missing = httpx.post(f"{dep.url}/v1/chat/completions", json={"model": "tiny"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    bearer = {"authorization": f"Bearer {dep.api_key}"}
    assert httpx.get(f"{dep.url}/v1/models", headers=bearer).status_code == 200
    assert httpx.get(f"{dep.url}/v2/health/ready").status_code == 200  # probes need no key


HOSTILE = [
    b"not json",
    b"[1, 2]",
    b'{"model": "tiny"}',
    b'{"model": 3, "messages": [{"role": "user", "content": "Hi"}]}',
    b'{"model": "tiny", "messages": "Hi"}',
    b'{"model": "tiny", "messages": []}',
    b'{"model": "tiny", "messages": [{"role": "wizard", "content": "Hi"}]}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": 5}]}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": -1}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": "9"}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "n": 1000000000}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stop": [1]}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stream": "yes"}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "top_p": 0}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "seed": 1.5}',
    b'{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "stream_options": {}}',
]


def test_hostile_bodies_get_4xx_and_the_server_keeps_serving(client, dep):
    headers = {"authorization": f"Bearer {dep.api_key}", "content-type": "application/json"}
    with httpx.Client(timeout=30) as http:
        for body in HOSTILE:
            r = http.post(f"{dep.url}/v1/chat/completions", content=body, headers=headers)
            assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        for body in (b'{"model": "tiny", "prompt": ["a", "b"]}', b'{"model": "tiny", "prompt": 7}'):
            r = http.post(f"{dep.url}/v1/completions", content=body, headers=headers)
            assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
        assert http.get(f"{dep.url}/v1/nowhere", headers=headers).status_code == 404
    assert _chat(client, "Hi", max_tokens=2, temperature=0).choices[0].message.content is not None


def test_deployment_chat_and_complete(dep, client):
    expected = _chat(client, "Hello there", max_tokens=12, temperature=0).choices[0].message.content
    assert dep.chat("Hello there", max_tokens=12, temperature=0) == expected
    assert "".join(dep.chat("Hello there", max_tokens=12, temperature=0, stream=True)) == expected
    done = dep.complete("The quick", max_tokens=6, temperature=0)
    assert "".join(dep.complete("The quick", max_tokens=6, temperature=0, stream=True)) == done
    assert dep.chat("Hello there", model="a", max_tokens=4, temperature=0) != dep.chat(
        "Hello there", model="b", max_tokens=4, temperature=0
    )
    from jupyter_ext.widgets.chat import ChatPanel

    panel = ChatPanel(dep, max_tokens=12, temperature=0)
    panel.send("Hello there")  # returns at once; the answer streams in a thread
    panel.wait(30)
    assert panel.messages[-1] == {"role": "assistant", "content": expected}
    assert "Hello there" in panel.transcript.value and panel.error is None
    from jupyter_ext.deployment import DeployError

    with pytest.raises(DeployError, match="serves text generation"):
        dep.predict([[0.0]])
    bundle = dep._repr_mimebundle_()
    assert "chat.completions.create" in bundle["text/plain"] and "/v1" in bundle["text/html"]


def test_model_with_tokenizer_listed_and_undeployed_by_magics(home, base, client, capsys):
    from IPython.core.interactiveshell import InteractiveShell
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base)
    tok = AutoTokenizer.from_pretrained(base)
    other = jupyter_ext.deploy(model, tokenizer=tok, name="inmem", verbose=False)
    answer = other.chat("Hello there", max_tokens=12, temperature=0)
    base_answer = _chat(client, "Hello there", max_tokens=12, temperature=0)  # same weights
    assert answer == base_answer.choices[0].message.content
    assert other.status == "running" and other.url.startswith("http://127.0.0.1:")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_ext")
    listed = shell.run_line_magic("deployments", "")
    assert {"tiny", "inmem"} <= set(listed["name"])
    assert listed.set_index("name").loc["inmem", "format"] == "hf-causal-lm"
    pid = other.pid
    shell.run_line_magic("undeploy", "inmem")
    assert "Stopped inmem" in capsys.readouterr().out
    wait_for(lambda: group_members(pid) == [], 10, what="the server's group to exit")
    assert jupyter_ext.get_deployment("inmem").status == "stopped"


def test_a_finetune_run_served_with_an_adapter_beside_it(home, base):
    pytest.importorskip("jupyter_ext.llm.export")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jupyter_ext.llm.export import export_run

    records = [
        {"messages": [{"role": "user", "content": "What is Ada's cat called?"},
                      {"role": "assistant", "content": "Pixel."}]}
    ] * 8  # fmt: skip
    run = jupyter_ext.finetune(
        base, records, learning_rate=3e-3, max_steps=3, name="ft", wait=True, val_fraction=0.25
    )
    assert run.status == "succeeded", run.error
    dep = jupyter_ext.deploy(run, adapters={"b": home.parent / "adapter-b"}, verbose=False)
    assert dep.models == ["ft", "b"]
    served = dep.chat("What is Ada's cat called?", max_tokens=8, temperature=0)
    merged = export_run(run, home.parent / "ft-merged")  # in-kernel reference, same weights
    tok = AutoTokenizer.from_pretrained(merged)
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is Ada's cat called?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )["input_ids"]  # fmt: skip
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert served == tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    dep.stop()


def test_vllm_is_refused_where_it_cannot_run(home, base):
    with pytest.raises(ValueError, match="engine='vllm' needs a CUDA device"):
        jupyter_ext.deploy(base, name="v", engine="vllm", verbose=False)
    with pytest.raises(ValueError, match="engine for a text model must be one of"):
        jupyter_ext.deploy(base, name="v", engine="litserve", verbose=False)


@pytest.mark.gpu
def test_vllm_engine_serves_the_same_api(home, base):
    pytest.importorskip("vllm")
    dep = jupyter_ext.deploy(base, name="vl", engine="vllm", device="cuda", verbose=False)
    client = openai.OpenAI(base_url=f"{dep.url}/v1", api_key="none", max_retries=0)
    whole = _chat(client, "Hello there", model="vl", max_tokens=8, temperature=0)
    text, finish, _ = _streamed_chat(client, "Hello there", model="vl", max_tokens=8, temperature=0)
    assert text == whole.choices[0].message.content and finish == ["length"]
    with pytest.raises(openai.BadRequestError):
        _chat(client, "word " * 2000, model="vl")
    dep.stop()
