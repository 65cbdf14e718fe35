"""The built-in tiny model: a seeded random-weight Llama and a byte-level tokenizer, written to disk once.

It is loaded through the same `from_pretrained` path a Hub model takes, so the whole
project runs offline. Its random weights produce nonsense text; that is expected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]
# Bytes as the tokens: every UTF-8 character of more than one byte spans several tokens,
# which keeps the incremental detokenizer honest.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


# Llama-architecture shapes: the built-in models and the benchmark's random-weight models of real sizes.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=259),
    "tiny2": dict(hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=6,
                  num_key_value_heads=3, vocab_size=259),
    "small": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3, vocab_size=49152),
    "tinyllama": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                      num_key_value_heads=4, vocab_size=32000),
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256),
}  # fmt: skip
BUILTIN_SHAPES = {"torchweave-tiny": "tiny", "torchweave-tiny2": "tiny2"}  # built-in model name -> shape


def build_tokenizer(out_dir: Path, vocab_size: int = len(SPECIAL_TOKENS) + 256) -> None:
    """Write a byte-level BPE tokenizer with no merges (3 specials, 256 byte tokens).

    A larger vocab_size adds filler tokens `<tN>` that text never encodes to but that decode,
    so a model with a real-sized vocabulary can emit any id.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    while len(vocab) < vocab_size:
        vocab[f"<t{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", model_max_length=2048
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)


def random_model(
    shape: str, seed: int = 0, initializer_range: float = 0.2, device: Any = "cpu", dtype: Any = None
) -> Any:
    """A seeded random-weight LlamaForCausalLM of one of SHAPES, built directly on `device` in `dtype`
    (default fp32), so a large shape is never materialized on the CPU first."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **SHAPES[shape],
        max_position_embeddings=2048,
        # A wide init makes logits peaked, so greedy choices are far from ties.
        initializer_range=initializer_range,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype or torch.float32)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.pad_token_id = 0
    return model


def ensure_builtin_model(cache_dir: Path, name: str = "torchweave-tiny") -> Path:
    """Directory of a built-in model, building it on first use (atomically, so workers can race)."""
    target = cache_dir / "models" / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        build_tokenizer(staging)
        random_model(BUILTIN_SHAPES[name]).save_pretrained(staging, safe_serialization=True)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").exists():  # someone else won only if they finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
