"""A tiny, randomly initialised Llama with an offline tokenizer: a base model directory for
examples, tests and benchmarks, built locally in about a second (nothing is downloaded).

The tokenizer is a byte-level BPE trained with ``tokenizers`` on the texts given (plus a
small built-in corpus), with ChatML special tokens and a ChatML chat template, so it
formats chat records like Qwen's. The model is a ``LlamaForCausalLM`` with grouped-query
attention (4 heads, 2 key/value heads), hidden size 64 and 2 layers by default.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A model learns from the data it is given, one step at a time.",
    "What is the capital of the made-up country? It is a city by the sea.",
    "user assistant system: you are a helpful assistant. Answer briefly.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000. Colours: red green blue yellow.",
    "Questions and answers, prompts and completions, texts and more texts.",
]


def build_tiny_llama(
    path: str | os.PathLike[str],
    texts: Iterable[str] = (),
    *,
    vocab_size: int = 1024,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Write a tiny random Llama and its tokenizer to ``path`` and return it; a base model
    for ``finetune()`` and ``deploy()`` that ``AutoModelForCausalLM.from_pretrained`` and
    ``AutoTokenizer.from_pretrained`` read offline.

    ``texts`` (for instance the fine-tuning data's strings) join the tokenizer's training
    corpus so they tokenize compactly.

    Example::

        >>> base = build_tiny_llama(tmp / "tiny-llama", ["Ada's cat is called Pixel."])
        >>> sorted(p.name for p in base.iterdir())  # doctest: +ELLIPSIS
        ['config.json', 'generation_config.json', 'model.safetensors', ...]
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    corpus = [*_CORPUS, *texts]

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=max_position_embeddings,
        chat_template=CHATML_TEMPLATE,
    )
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    return out
