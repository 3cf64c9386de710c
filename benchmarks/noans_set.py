"""Unanswerable (NoAns) questions for `kotae eval`, SQuAD 2.0-style: every question of --data is retrieved
from --index as if its gold article (the passages sharing its gold passage's title) were not there, and
written as `{qid: "<qid>:noans", question, answers: [], answerable: false, gold_passage_ids, contexts}`,
the contexts being the --top-k passages retrieved without the article. `kotae eval` asks such a question
in-process the same way (its gold article excluded), or with `--contexts given` on the written passages.

    python benchmarks/noans_set.py --data ../shared/data/qa/jsquad-valid-dev.jsonl --index ~/jawiki \\
        --out runs/noans/jsquad-valid-dev-mixed.jsonl --with-answerable

Questions whose gold passages the index does not hold are left out (nothing could be excluded).
"""

import argparse
import json
from itertools import islice
from pathlib import Path

from kotae.core.config import Settings
from kotae.core.durable import atomic_text
from kotae.core.qa_jsonl import read_qa_jsonl
from kotae.rag.unanswerable import noans_row, search_without_gold
from kotae.runtime import open_retriever

BATCH = 256
"""Questions per retrieval call (one embedding batch)."""


def main() -> None:
    args = _arguments()
    items = [item for _, item in islice(read_qa_jsonl(args.data), args.limit)]
    retriever = open_retriever(Settings(index=args.index))
    held = [item for item in items if item.answerable and retriever.titles_of(item.gold_passage_ids)]
    written = 0
    with atomic_text(args.out) as out:
        if args.with_answerable:
            out.writelines(islice(_lines(args.data), len(items)))
        for start in range(0, len(held), BATCH):
            batch = held[start : start + BATCH]
            for item, found in zip(batch, search_without_gold(retriever, batch, args.top_k), strict=True):
                out.write(json.dumps(noans_row(item, found), ensure_ascii=False) + "\n")
                written += 1
    retriever.index.close()
    print(f"{written} NoAns questions written to {args.out} ({len(items) - len(held)} left out)")


def _lines(path: Path) -> list[str]:
    """The non-blank lines of a JSONL file, newline-terminated."""
    return [
        line.rstrip("\n") + "\n" for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="QA JSONL with gold_passage_ids.")
    parser.add_argument("--index", type=Path, required=True, help="Index holding the gold passages.")
    parser.add_argument("--out", type=Path, required=True, help="QA JSONL to write.")
    parser.add_argument("--top-k", type=int, default=Settings().top_k, help="Passages written per question.")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N questions of --data.")
    parser.add_argument(
        "--with-answerable", action="store_true", help="Write the questions of --data first, as they are."
    )
    return parser.parse_args()


if __name__ == "__main__":
    main()
