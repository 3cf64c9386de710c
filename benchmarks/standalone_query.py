"""Does the standalone query of a chat's follow-up (`kotae.rag.standalone_query`) retrieve the gold
passage where the bare last question does not? Multi-turn cases written for the demo corpus
(`benchmarks/data/multiturn_demo.jsonl`: earlier turns with their answers, the follow-up, the gold
passage id; the last two switch topic, where the rewrite can only hurt), retrieved from the embedded
default index with the default embedder, in every retrieval mode.

    python benchmarks/standalone_query.py [--cases FILE] [--out results.json]
"""

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

from kotae.core.config import RetrievalMode, Settings
from kotae.rag.conversation import Conversation, Turn
from kotae.rag.standalone_query import standalone_query
from kotae.runtime import open_retriever

CASES = Path(__file__).parent / "data" / "multiturn_demo.jsonl"
HITS_AT = (1, 3)
"""Ranks the gold passage is looked for within (3: kotae's default passages per prompt)."""


def conversation_of(case: dict) -> Conversation:
    return Conversation(case["question"], tuple(Turn(question, answer) for question, answer in case["turns"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cases = [json.loads(line) for line in args.cases.read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = {
        "bare": [c["question"] for c in cases],
        "standalone": [standalone_query(conversation_of(c)) for c in cases],
    }
    retriever = open_retriever(Settings())
    depth = max(HITS_AT)
    modes: dict[str, dict[str, dict[str, float]]] = {}
    per_case: dict[str, dict[str, int | None]] = {c["id"]: {} for c in cases}
    for mode in get_args(RetrievalMode):
        modes[mode] = {}
        for name, texts in queries.items():
            found = retriever.search_many(texts, depth, mode)
            ranks = [
                next((rank for rank, hit in enumerate(r.hits, 1) if hit.passage.id == c["gold"]), None)
                for c, r in zip(cases, found, strict=True)
            ]
            modes[mode][name] = {
                f"hit@{k}": sum(rank is not None and rank <= k for rank in ranks) / len(cases)
                for k in HITS_AT
            }
            for case, rank in zip(cases, ranks, strict=True):
                per_case[case["id"]][f"{mode}/{name}"] = rank
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()} ({platform.node()})",
        "cases": len(cases),
        "modes": modes,
        "queries": dict(zip((c["id"] for c in cases), queries["standalone"], strict=True)),
        "gold_rank": per_case,
    }
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
