"""Every knob of an adapter training run (CPT → merge → SFT), with its default.

SFT and CPT share the trainer knobs (`TrainingConfig`); each adds what its data needs. The defaults suit a
run of about 30k QA examples on one GPU; the tests shrink them.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from kotae.core.config import DEFAULT_CONTEXT_TOKEN_BUDGET, DEFAULT_TOP_K
from kotae.rag.prompt import DEFAULT_PROMPT_FORMAT, PromptFormat

Method = Literal["gptq", "awq"]


@dataclass
class LoraSpec:
    """The LoRA adapter's shape."""

    r: int = 16
    """Rank of the update matrices; vLLM serves up to `Settings.max_lora_rank`."""
    alpha: int = 16
    """Scale numerator: the update is multiplied by alpha / r. SFT keeps it low (1.0) so the format is
    learned without pushing the base model far from what it knows."""
    dropout: float = 0.05
    """Dropout on the LoRA input during training."""
    target_modules: tuple[str, ...] = ()
    """Linear layers that get a LoRA update; empty: every linear layer of the model's blocks, attention and
    MLP (SFT teaches a format, which touches both), with the names read from the model."""
    modules_to_save: tuple[str, ...] = ()
    """Modules trained in full and saved with the adapter (CPT's embeddings with `train_embeddings`)."""


@dataclass(kw_only=True)
class TrainingConfig:
    """Trainer knobs shared by SFT and CPT (passed on to TRL's `SFTConfig`)."""

    base: Path
    """Base model folder (Hugging Face format)."""
    out: Path
    """Adapter directory to write (atomically, at the end)."""
    lora: LoraSpec = field(default_factory=LoraSpec)
    """Adapter shape."""
    learning_rate: float = 2e-4
    """Peak learning rate (AdamW), reached after warmup, then cosine decay."""
    epochs: float = 1.0
    """Passes over the training split (ignored when `max_steps` is set)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (tests, time-boxed GPU runs)."""
    batch_size: int = 16
    """Sequences per forward pass."""
    grad_accumulation: int = 2
    """Forward passes per optimizer step: the effective batch is batch_size x grad_accumulation (32)."""
    warmup_ratio: float = 0.03
    """Share of the steps spent ramping the learning rate up from 0."""
    full_module_learning_rate: float = 1e-5
    """Learning rate of the modules trained in full (`lora.modules_to_save`, e.g. CPT's embeddings): far
    below the LoRA rate, since every token the model reads goes through them (the forgetting check watches
    this)."""
    weight_decay: float = 0.0
    """AdamW weight decay (LoRA's few parameters rarely need it)."""
    max_length: int = 2048
    """Longest tokenized example; longer ones are cut at the end. 2048 holds the default 1536-token context
    budget, the template, the question and the answer."""
    packing: bool = False
    """Pack examples best-fit into `max_length` rows (long ones split across rows). Each still attends only
    to itself: transformers builds a block-diagonal mask from the position ids."""
    group_by_length: bool = True
    """Without packing, batch examples of similar length together, so RAG prompts of mixed length waste
    little compute on padding."""
    neftune_noise_alpha: float | None = None
    """NEFTune: uniform noise of this scale on the input embeddings while training (e.g. 5); off by
    default — it helps open-ended chat, and an extractive answer copies its span from the prompt."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of keeping them: less memory for a slower step,
    what 7B-class bases need on one GPU; a 270M model does not."""
    load_in_4bit: bool = False
    """QLoRA: the frozen base loads in 4-bit NF4 (bitsandbytes, double quantization, computing in the
    training dtype), a quarter of its 16-bit memory. The adapter still belongs to the 16-bit base: it serves
    there, or on vLLM's bitsandbytes quantization of it (`KOTAE_QUANTIZATION=bitsandbytes`)."""
    eval_fraction: float = 0.02
    """Share of the examples held out for evaluation loss and the probes (0 for none)."""
    eval_steps: int = 200
    """Evaluate on the held-out split every this many optimizer steps (and at the end)."""
    save_steps: int | None = None
    """Checkpoint (adapter + optimizer state) every this many steps into the work dir, for `resume`."""
    resume: bool = False
    """Continue from the newest checkpoint in the work dir (`<out>.work/`)."""
    init_adapter: Path | None = None
    """Start from this adapter's weights instead of a fresh LoRA (a further epoch, new data): its shape
    (`lora`) is kept, and it must have been trained on `base`. The optimizer and schedule start afresh."""
    logging_steps: int = 10
    """Log the loss every this many optimizer steps."""
    probe_every: int = 100
    """Generate answers for the probe set every this many optimizer steps (0 turns probes off)."""
    probe_count: int = 8
    """Probe questions, taken from the held-out split (SFT) or the knowledge probe (CPT)."""
    knowledge_probe: Path | None = None
    """QA JSONL answerable only from the CPT text, asked without context before and after training:
    the forgetting check."""
    wandb: bool = False
    """Also log to Weights & Biases (honours WANDB_MODE=offline); skipped with a message if not installed."""
    seed: int = 42
    """Seeds data shuffling, the held-out split, context order and LoRA initialization."""
    dataloader_workers: int = 0
    """DataLoader worker processes (0 loads in the training process; examples are pre-tokenized)."""
    tokenize_workers: int | None = None
    """Processes that tokenize the examples before training (None: this one). One process spends about a
    minute and a half on 31k RAG prompts; more are worth it on a machine with cores to spare."""

    def hyperparameters(self) -> dict[str, Any]:
        """What the metadata records: every knob but the paths, as JSON values (tuples become lists)."""
        values = asdict(self)
        paths = ("base", "out", "knowledge_probe", "data", "mix", "index", "examples", "text", "init_adapter")
        for key in paths:
            values.pop(key, None)
        return json.loads(json.dumps(values))


@dataclass(kw_only=True)
class SFTRunConfig(TrainingConfig):
    """Supervised fine-tuning, loss on the answer only: QA (the question with retrieved contexts → the gold
    answer) and instruction records (instruction and input → output), in the adapter's prompt format."""

    data: Path | None = None
    """QA JSONL `{qid, question, answers, gold_passage_ids}` (needs `index`) or instruction JSONL
    `{instruction, input, output}` (Alpaca style), told apart by the first record's fields."""
    mix: tuple[Path, ...] = ()
    """More QA or instruction JSONL files, trained together with `data`."""
    index: Path | None = None
    """Index holding the gold passages of the QA files and giving the distractors."""
    examples: tuple[Path, ...] = ()
    """Prompt/completion JSONL files written by `kotae train examples` (instead of `data` + `index`), trained
    together: e.g. two QA sets' examples, each with its own share of negatives."""
    prompt_format: PromptFormat = DEFAULT_PROMPT_FORMAT
    """Format of the prompts (`kotae.rag.prompt`): alpaca-ja (指示/入力/応答), chat-template (the base
    model's own), rwkv (`+qa`/`+gen` prefixes) or record-line (one record per line). Recorded in the adapter;
    serving writes the adapter's prompts in it."""
    contexts: int = DEFAULT_TOP_K
    """Passages per prompt: the gold one plus contexts - 1 retrieved distractors, as `top_k` serves."""
    context_token_budget: int = DEFAULT_CONTEXT_TOKEN_BUDGET
    """Token budget of the contexts, as `Settings.context_token_budget` serves."""
    negatives: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    """Negative examples per question (0–1): this share of the questions is also asked without its gold
    article and trained to answer 「資料には答えが見つかりません。」 (`kotae.adapters.negatives`);
    0 for none."""


def _cpt_lora() -> LoraSpec:
    return LoraSpec(alpha=64)


@dataclass(kw_only=True)
class CPTRunConfig(TrainingConfig):
    """Continued pre-training: next-token loss on raw passages, to put private knowledge into the weights."""

    text: Path
    """Passage JSONL `{id, title, text}`."""
    lora: LoraSpec = field(default_factory=_cpt_lora)
    """High alpha (64/16 = 4x): new facts need a larger update than a new format, and the merged result is
    what SFT then starts from."""
    learning_rate: float = 1e-4
    """Half of SFT's: with alpha 4x the update is already large, and raw text is many more tokens."""
    train_embeddings: bool = False
    """Train the input and output embeddings in full too (`embed_tokens`/`lm_head` for Llama,
    `embed_in`/`embed_out` for GPT-NeoX-Japanese…, read from the model), at `full_module_learning_rate`:
    new words and names live in the vocabulary rows. vLLM cannot serve such an adapter as LoRA; it needs
    `kotae merge` first."""
    packing: bool = True
    """Passages are packed into `max_length` rows: no padding, and a long passage is split, not cut."""
    max_length: int = 1024
    """Row length when packing."""
    eval_fraction: float = 0.0
    """Every passage is knowledge to inject: none is held out; the knowledge probe measures the run."""


@dataclass(kw_only=True)
class RerankerRunConfig:
    """`kotae train reranker`: a cross-encoder taught with binary cross-entropy that a question's gold
    passage scores 1 and the passages kotae's hybrid retrieval ranks high for it, without its answer, 0."""

    base: Path
    """Model to start from: a sentence-transformers folder (its transformer is taken) or a BERT-like
    Hugging Face folder; either gets a fresh one-logit head."""
    out: Path
    """Reranker folder to write (atomically, at the end): what `KOTAE_RERANKER` names."""
    data: tuple[Path, ...]
    """QA JSONL files `{qid, question, answers, gold_passage_ids}` trained on together."""
    index: Path
    """Index holding the gold passages; its hybrid retrieval gives the hard negatives."""
    negatives: int = field(default=7, metadata={"min": 0})
    """Hard negatives per question: the best-ranked of its fused top `FUSION_DEPTH` that are neither a
    gold passage nor a chunk of one and hold none of its answers."""
    max_length: int = 256
    """Longest tokenized (question, passage) pair; longer ones lose the passage's end. A 400-character
    chunk with its title and a question fit."""
    learning_rate: float = 2e-5
    """Peak learning rate (AdamW), reached after warmup, then cosine decay: every weight of the encoder is
    trained, not an adapter's few, so it stays a tenth of a LoRA's."""
    epochs: float = 1.0
    """Passes over the pairs (ignored when `max_steps` is set)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (tests, time-boxed GPU runs)."""
    batch_size: int = 64
    """Pairs per optimizer step, shuffled: each pair is scored alone, so a question's gold passage and its
    negatives need not share a batch."""
    warmup_ratio: float = 0.1
    """Share of the steps spent ramping the learning rate up from 0 (the head starts random)."""
    seed: int = 42
    """Seeds the head's initialization and the order of the pairs."""
