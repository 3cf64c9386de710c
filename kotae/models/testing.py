"""Models for tests only: tiny random models with the real tokenizers, built at test time in seconds.

They load and run through the same code paths as the real models (transformers, sentence-transformers,
vLLM) but say nothing meaningful. The Gemma tokenizer comes out of the packaged GGUF, which takes ~20 s, so
it is extracted once into a cache folder keyed by the GGUF's sha256 and the transformers version.
"""

import shutil
import tempfile
from pathlib import Path

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


def build_random_lora(base: Path, out: Path, seed: int, rank: int = 8) -> Path:
    """A PEFT LoRA adapter for `base` with random A and B (B nonzero: its output differs from the base)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj", "o_proj"])
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
