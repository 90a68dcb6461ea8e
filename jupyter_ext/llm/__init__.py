"""Open models: fine-tuning a Hugging Face causal LM with LoRA as an ordinary run, exporting it,
and the tiny offline base used by examples and tests.

- :mod:`.data`: records (chat, prompt/completion, text) to token ids and loss masks
- :mod:`.module`: the LightningModule around transformers + peft
- :mod:`.finetune`: ``finetune()``, checks in the kernel, then an ordinary run
- :mod:`.export`: a run to a Hugging Face directory (merged) or a PEFT adapter
- :mod:`.tiny`: ``build_tiny_llama()``

Nothing is imported here: torch and transformers load when a function needs them.
"""
