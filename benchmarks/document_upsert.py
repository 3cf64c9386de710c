"""Documents written into a served collection: how long a batch of upserts takes, stage by stage (chunk,
words and embeddings; the overlay's transaction and snapshot), and how fast retrieval stays with them.

The documents are real paragraphs of the corpus given, rewritten (their text reversed sentence by
sentence) under new ids, plus the same number replacing paragraphs of the index by id. Writes into a copy
of the overlay file: the index itself is never changed.

    python benchmarks/document_upsert.py --index ~/kotae-index \\
        --corpus ../shared/data/jawiki-paragraphs.jsonl --documents 100 --rounds 5
"""

import argparse
import itertools
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from kotae.core.config import Settings
from kotae.indexer.embedder import Embedder
from kotae.indexer.index import Index
from kotae.indexer.overlay import DocumentOverlay, overlay_path
from kotae.models.store import ModelStore
from kotae.rag.documents import DocumentInput, prepare_written
from kotae.rag.retriever import Retriever


def documents(corpus: Path, count: int, round_number: int) -> list[DocumentInput]:
    """`count` documents, half of them new and half replacing indexed ones, different in each round."""
    lines = itertools.islice(corpus.open(encoding="utf-8"), count * round_number, count * (round_number + 1))
    written = []
    for number, row in enumerate(map(json.loads, lines)):
        text = "。".join(reversed(row["text"].split("。")))
        doc_id = row["id"] if number % 2 else f"written-{round_number}-{number}"
        written.append(DocumentInput(doc_id, row["title"], text))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument(
        "--corpus", type=Path, required=True, help="JSONL {id,title,text} the index was built from"
    )
    parser.add_argument(
        "--documents", type=int, default=100, help="documents per round (half new, half replacing)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--questions", type=int, default=50, help="retrievals timed before and after")
    args = parser.parse_args()

    settings = Settings()
    embedder = Embedder(ModelStore(settings.home).embedder(settings.embedder))
    with tempfile.TemporaryDirectory() as scratch:
        # A link to the index with a copy of its overlay (if any) beside it: the index never changes.
        index_dir = Path(scratch) / args.index.name
        index_dir.symlink_to(args.index.resolve(), target_is_directory=True)
        if overlay_path(args.index).is_file():
            shutil.copy2(overlay_path(args.index), overlay_path(index_dir))
        index = Index.open(index_dir)
        retriever = Retriever(index, embedder, settings)
        questions = [
            row["title"] + "とは？"
            for row in map(json.loads, itertools.islice(args.corpus.open(), args.questions))
        ]

        def retrieval_ms() -> float:
            started = time.perf_counter()
            for question in questions:
                retriever.retrieve(question, settings.top_k)
            return (time.perf_counter() - started) * 1000 / len(questions)

        before = retrieval_ms()
        rounds = []
        for number in range(args.rounds):
            batch = documents(args.corpus, args.documents, number)
            started = time.perf_counter()
            ready = prepare_written(batch, retriever)
            prepared = time.perf_counter()
            if index.overlay is None:
                index.overlay = DocumentOverlay(overlay_path(index_dir), index.manifest.embedder.dimension)
            index.overlay.upsert(ready)
            written = time.perf_counter()
            first_query = retrieval_ms()
            rounds.append(
                {
                    "documents": len(batch),
                    "passages": sum(len(d.passages) for d in ready),
                    "prepare_s": round(prepared - started, 3),
                    "write_s": round(written - prepared, 4),
                    "retrieve_ms_after": round(first_query, 1),
                }
            )
            print(rounds[-1], flush=True)
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} ({os.cpu_count()} cores)",
            "index": str(args.index),
            "index_passages": index.manifest.count,
            "embedder": embedder.backend,
            "retrieve_ms_before": round(before, 1),
            "rounds": rounds,
            "overlay_passages_at_end": len(index.overlay.snapshot.keys) if index.overlay else 0,
        }
        print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
