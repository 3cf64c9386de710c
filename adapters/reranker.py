"""`kotae train reranker`: a cross-encoder trained from the embedder's weights (or any BERT-like model) with
sentence-transformers' `CrossEncoderTrainer` and binary cross-entropy on `kotae.adapters.reranker_pairs`.
It is served by `kotae.rag.reranker.Reranker` when `KOTAE_RERANKER` names its folder."""

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from kotae.adapters.atomic import atomic_dir, check_target
from kotae.adapters.config import RerankerRunConfig
from kotae.adapters.reranker_pairs import RerankPair, questions_with_golds, rerank_pairs
from kotae.core.config import get_settings
from kotae.core.errors import KotaeError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder


def train_reranker(config: RerankerRunConfig, console: Console, overwrite: bool = False) -> Path:
    """Train and write `config.out`; the folder written."""
    check_target(config.out, overwrite)
    if not config.data:
        raise KotaeError("a reranker needs --data: QA JSONL with the questions' gold passage ids")
    pairs = _pairs(config, console)
    positives = sum(pair.label == 1.0 for pair in pairs)
    console.print(f"{len(pairs)} pairs: {positives} gold, {len(pairs) - positives} hard negatives")
    model = _fit(config, pairs)
    with atomic_dir(config.out, overwrite) as staging:
        model.save_pretrained(str(staging))
    console.print(f"[green]wrote[/] {config.out}")
    return config.out


def transformer_folder(base: Path) -> Path:
    """The Hugging Face model a reranker starts from: in a sentence-transformers folder, the folder of its
    Transformer module (`modules.json`: the folder itself or a subfolder such as `0_Transformer`); any
    other model folder as it is."""
    modules = base / "modules.json"
    if not modules.is_file():
        if not (base / "config.json").is_file():
            raise KotaeError(f"{base}: not a model folder (no modules.json or config.json)")
        return base
    entries = json.loads(modules.read_text(encoding="utf-8"))
    transformer = next((entry for entry in entries if entry.get("type", "").endswith("Transformer")), None)
    if transformer is None:
        raise KotaeError(f"{modules}: no Transformer module to start a reranker from")
    return base / transformer.get("path", "")


def _pairs(config: RerankerRunConfig, console: Console) -> list[RerankPair]:
    """Every data file's pairs, the negatives from hybrid retrieval over `config.index` with the
    configured embedder (the one the index was built with) and no reranker. Every file is read and its
    gold passages found before the embedder loads, so that bad input fails at once."""
    from kotae.indexer.embedder import load_embedder
    from kotae.indexer.index import Index
    from kotae.rag.retriever import Retriever

    settings = get_settings()
    index = Index.open(config.index)
    try:
        questions = [pair for path in config.data for pair in questions_with_golds(path, index)]
        with console.status("loading the embedder…"):
            embedder = load_embedder(settings.embedder, settings.home)
        retriever = Retriever(index, embedder, settings.model_copy(update={"retrieval": "hybrid"}))
        return rerank_pairs(questions, retriever, config.negatives)
    finally:
        index.close()


def _fit(config: RerankerRunConfig, pairs: list[RerankPair]) -> "CrossEncoder":
    import torch
    from datasets import Dataset
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed

    set_seed(config.seed)  # before the model: the new head's initialization
    model = CrossEncoder(
        str(transformer_folder(config.base)),
        num_labels=1,
        max_length=config.max_length,
        local_files_only=True,
    )
    dataset = Dataset.from_dict(
        {
            "question": [pair.question for pair in pairs],
            "passage": [pair.passage for pair in pairs],
            "label": [pair.label for pair in pairs],
        }
    )
    # Each gold pair weighs as much as its question's negatives together, so that the loss does not
    # reward scoring everything low.
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(max(config.negatives, 1))))
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="kotae-reranker-") as work:
        args = CrossEncoderTrainingArguments(
            output_dir=work,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps or -1,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=config.warmup_ratio,  # a float below 1 is a share of the steps
            bf16=cuda and torch.cuda.is_bf16_supported(),
            use_cpu=not cuda,
            save_strategy="no",
            report_to="none",
            logging_steps=50,
            seed=config.seed,
            data_seed=config.seed,
        )
        CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=loss).train()
    return model
