"""BM25 search with MaxScore pruning against reading every posting, on one built BM25 index, in one process:
each question is searched both ways in turn (the fairest comparison on a shared machine), on one thread, and
the results must be equal.

    python benchmarks/bm25_scale.py --n 1000000 --engines kotae --skip-quality --keep --work /tmp/b25
    python benchmarks/bm25_pruning.py --bm25 /tmp/b25/kotae-1000000 --k 20 50

Questions: jsquad-valid-dev's, tokenized as the index's passages were. Figures are recorded in
docs/BENCHMARKS.md.
"""

import argparse
import json
import time
from pathlib import Path

from index_scale import percentiles

from kotae.evals.datasets import load_dataset
from kotae.indexer.bm25 import Bm25Index
from kotae.indexer.tokenizer import SudachiTokenizer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "qa" / "jsquad-valid-dev.jsonl"


def thread_ms(index: Bm25Index, words: list[str], k: int, prune: bool) -> tuple[float, list]:
    started = time.thread_time()
    found = index.search_many([words], k, prune=prune)[0]
    return (time.thread_time() - started) * 1000, found


def summary(times: list[float]) -> dict:
    return percentiles(times) | {"mean": round(sum(times) / len(times), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bm25", type=Path, required=True, help="A BM25 index folder (bm25.json inside).")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--k", type=int, nargs="+", default=[20, 50])
    args = parser.parse_args()
    index = Bm25Index.load(args.bm25, threads=1)
    tokenizer = SudachiTokenizer()
    questions = [tokenizer.tokenize(item.question) for item in load_dataset(args.data)][: args.questions]
    report: dict = {"passages": len(index), "questions": len(questions), "by_k": {}}
    for k in args.k:
        for words in questions[:10]:  # warm-up: pages, each term's largest score
            thread_ms(index, words, k, True)
        pruned, exhaustive, equal = [], [], 0
        for words in questions:
            full_ms, full = thread_ms(index, words, k, False)
            pruned_ms, found = thread_ms(index, words, k, True)
            exhaustive.append(full_ms)
            pruned.append(pruned_ms)
            equal += found == full
        report["by_k"][k] = {
            "every posting (thread CPU ms)": summary(exhaustive),
            "pruned (thread CPU ms)": summary(pruned),
            "equal results": f"{equal}/{len(questions)}",
        }
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
