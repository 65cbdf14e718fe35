"""The built-in tiny model: a seeded random-weight Llama and a byte-level tokenizer, written to disk once.

It is loaded through the same `from_pretrained` path a Hub model takes, so the whole
project runs offline. Its random weights produce nonsense text; that is expected.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]
# Bytes as the tokens: every UTF-8 character of more than one byte spans several tokens,
# which keeps the incremental detokenizer honest.
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)


def build_tokenizer(out_dir: Path) -> None:
    """Write a byte-level BPE tokenizer with no merges (256 byte tokens plus 3 specials)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
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


def build_model(out_dir: Path, vocab_size: int, seed: int = 0) -> None:
    """Write a seeded random-weight Llama (2 layers, hidden 64) as safetensors."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        # A wide init makes logits peaked, so greedy choices are far from ties.
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = 0
    model.save_pretrained(out_dir, safe_serialization=True)


def ensure_builtin_model(cache_dir: Path) -> Path:
    """Directory of the built-in model, building it on first use (atomically, so workers can race)."""
    target = cache_dir / "models" / "torchweave-tiny"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target.parent))
    try:
        build_tokenizer(staging)
        build_model(staging, vocab_size=len(SPECIAL_TOKENS) + 256)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / "config.json").exists():  # someone else won only if they finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
