"""Open models: fine-tuning a Hugging Face causal LM with LoRA as an ordinary run, exporting it,
and the tiny offline base used by examples and tests."""
