"""How many passages of a stand-in dump (`benchmarks/jawiki_dump.py`) hold a QA question's answer beside
its words: distractors a retriever cannot tell from the gold passage, scaled to a 5.5M-passage index.

    python benchmarks/jawiki_dump.py --out /tmp/d100k.xml.bz2 --articles 100000
    python benchmarks/stand_in_leakage.py --dump /tmp/d100k.xml.bz2 --questions 300

A passage counts when it holds an answer string (2+ characters) and at least half of the question's content
words (kanji, katakana or latin runs of 2+ characters that are not the answer). The same count over the
real paragraphs, the gold paragraph left out, is the baseline. Figures are recorded in docs/BENCHMARKS.md.
"""

import argparse
import json
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from kotae.indexer.chunking import chunk_document
from kotae.indexer.sources import read_documents

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CONTENT_WORD = re.compile(r"[一-龥々ァ-ヶー]{2,}|[A-Za-z0-9]{2,}")
WIKIPEDIA_PASSAGES = 5_500_000


def matching(texts: Sequence[str], answers: Sequence[str], words: set[str]) -> int:
    """Texts holding an answer and at least half of `words`."""
    need = max(1, (len(words) + 1) // 2)
    return sum(
        1 for text in texts if any(a in text for a in answers) and sum(w in text for w in words) >= need
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=Path, required=True, help="a stand-in .xml.bz2 from jawiki_dump.py")
    parser.add_argument("--paragraphs", type=Path, default=DATA / "jawiki-paragraphs.jsonl")
    parser.add_argument("--data", type=Path, default=DATA / "qa" / "jsquad-valid-dev.jsonl")
    parser.add_argument("--questions", type=int, default=300, help="the first N questions of --data")
    args = parser.parse_args()

    documents = read_documents(args.dump)
    stand_in = [passage.text for document in documents for passage in chunk_document(document)]
    real = {row["id"]: row["text"] for row in map(json.loads, args.paragraphs.open(encoding="utf-8"))}
    scale = WIKIPEDIA_PASSAGES / len(stand_in)
    counts: dict[str, list[float]] = {"stand-in, per 5.5M passages": [], "real paragraphs, gold left out": []}
    rows = [json.loads(line) for line in args.data.open(encoding="utf-8")][: args.questions]
    for row in rows:
        answers = [answer for answer in row["answers"] if len(answer) >= 2]
        if not answers:
            continue
        words = set(CONTENT_WORD.findall(row["question"])) - set(answers)
        gold = {passage_id.split("#")[0] for passage_id in row.get("gold_passage_ids", [])}
        counts["stand-in, per 5.5M passages"].append(matching(stand_in, answers, words) * scale)
        others = [text for paragraph_id, text in real.items() if paragraph_id not in gold]
        counts["real paragraphs, gold left out"].append(matching(others, answers, words))
    report = {"stand_in_passages": len(stand_in), "questions": len(counts["stand-in, per 5.5M passages"])}
    for name, values in counts.items():
        report[name] = {
            "mean": round(statistics.fmean(values), 1),
            "share of questions with one or more (in this dump)": round(
                sum(value > 0 for value in values) / len(values), 3
            ),
        }
    print(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
