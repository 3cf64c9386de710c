"""Calibrates the abstention gate (`KOTAE_ABSTAIN_MIN_COSINE`) and measures what separates answerable
from unanswerable questions in retrieval scores.

Each question of --calibrate and --report is retrieved from --index twice: as it is (answerable: its gold
article is in the index) and without its gold article (unanswerable: the passages sharing its gold
passage's title are excluded, as `benchmarks/noans_set.py` does). For each, the best dense cosine
(multilingual-e5-small, the gate's signal) and the best BM25 score are recorded. The threshold is chosen
on --calibrate alone: the highest cosine (to 0.001) below which at most --max-false share of its
answerable questions fall (0: none of them). Every set is then scored at that threshold and at a grid of
others: the share of answerable questions the gate would wrongly stop, and the share of unanswerable ones
it stops (its NoAns accuracy); and, for both signals, the AUC (the chance that an answerable question
scores higher than an unanswerable one) and percentiles.

    python benchmarks/abstention_gate.py --index ~/jawiki \\
        --calibrate ../shared/data/qa/jsquad-valid-train.jsonl \\
        --report ../shared/data/qa/jsquad-valid-dev.jsonl

With --predictions (an adapter's `predictions.jsonl` from `kotae eval --out` or `adapter_table.py`, on the
mixed sets: each question and its `:noans` twin), the two ways kotae abstains are also scored together, as
the server runs them: a question gets 「資料には答えが見つかりません。」 when the gate stops it or the model
writes it. At each threshold of a finer grid: HasAns exact (answered right and not stopped), NoAns accuracy
and exact over both. The joint threshold is the one --calibrate's predictions score best on over both, as
SQuAD 2.0's evaluation chooses its no-answer threshold; the other sets are reported at it.
"""

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kotae.core.config import RetrievalMode, Settings
from kotae.core.jsonl import read_jsonl
from kotae.core.qa_jsonl import QAItem, read_qa_jsonl
from kotae.rag.retriever import Retriever
from kotae.rag.unanswerable import search_without_gold
from kotae.runtime import open_retriever

BATCH = 256
"""Questions per retrieval call (one embedding batch)."""
GRID = np.arange(0.80, 0.875, 0.01)
"""Thresholds the gate is also scored at, for the trade-off."""
JOINT_GRID = np.round(np.arange(0.78, 0.8801, 0.0025), 4)
"""Thresholds the gate and the model are scored at together."""


def main() -> None:
    args = _arguments()
    retriever = open_retriever(Settings(index=args.index))
    scored = {path.name: _scores(retriever, path) for path in (args.calibrate, *args.report)}
    retriever.index.close()
    scores = {name: signals for name, (_, signals) in scored.items()}
    predictions = _predictions(args.predictions)
    calibration = scores[args.calibrate.name]
    has_ans = np.sort(calibration["cosine"]["has_ans"])
    threshold = float(np.floor(has_ans[int(args.max_false * len(has_ans))] * 1000) / 1000)
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()} ({platform.node()})",
        "threshold": threshold,
        "calibrated_on": args.calibrate.name,
        "sets": {name: _summary(signals, threshold) for name, signals in scores.items()},
    }
    if predictions:
        results["joint"] = _joint(scored, predictions, args.calibrate.name)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


def _scores(retriever: Retriever, path: Path) -> tuple[list[str], dict[str, dict[str, np.ndarray]]]:
    """The questions' ids, and the best dense cosine and best BM25 score of each, with and without its gold
    article."""
    items = [item for _, item in read_qa_jsonl(path) if item.answerable and item.gold_passage_ids]
    signals: dict[str, dict[str, list[float]]] = {
        "cosine": {"has_ans": [], "no_ans": []},
        "bm25": {"has_ans": [], "no_ans": []},
    }
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        for name, mode in (("cosine", "dense"), ("bm25", "bm25")):
            signals[name]["has_ans"] += _best(retriever, batch, mode, without_gold=False)
            signals[name]["no_ans"] += _best(retriever, batch, mode, without_gold=True)
    arrays = {name: {k: np.array(v) for k, v in pair.items()} for name, pair in signals.items()}
    return [item.qid for item in items], arrays


def _best(retriever: Retriever, batch: list[QAItem], mode: RetrievalMode, without_gold: bool) -> list[float]:
    if without_gold:
        found = search_without_gold(retriever, batch, 1, mode)
    else:
        found = retriever.search_many([item.question for item in batch], 1, mode)
    if mode == "dense":
        return [r.best_cosine or 0.0 for r in found]
    return [r.hits[0].score if r.hits else 0.0 for r in found]


def _summary(signals: dict[str, dict[str, np.ndarray]], threshold: float) -> dict[str, object]:
    cosine = signals["cosine"]
    return {
        "questions": len(cosine["has_ans"]),
        **_at(cosine, threshold),
        "cosine_grid": {f"{t:.2f}": _at(cosine, t) for t in GRID},
        **{
            name: {
                "auc": round(_auc(pair["has_ans"], pair["no_ans"]), 4),
                **{
                    f"{split}_p{q}": round(float(np.percentile(values, q)), 4)
                    for split, values in pair.items()
                    for q in (0, 1, 5, 50, 95)
                },
            }
            for name, pair in signals.items()
        },
    }


def _at(cosine: dict[str, np.ndarray], threshold: float) -> dict[str, float]:
    """The gate at `threshold`: the share of answerable questions it stops, of unanswerable ones it stops."""
    return {
        "has_ans_stopped": round(float(np.mean(cosine["has_ans"] < threshold)), 4),
        "no_ans_accuracy": round(float(np.mean(cosine["no_ans"] < threshold)), 4),
    }


def _predictions(paths: list[Path]) -> dict[str, dict[str, bool]]:
    """qid -> whether the answer was exact and whether the model abstained, over every predictions file."""
    return {
        row["qid"]: {"exact": bool(row["exact"]), "abstained": bool(row["abstained"])}
        for path in paths
        for _, row in read_jsonl(path)
    }


def _joint(
    scored: dict[str, tuple[list[str], dict[str, dict[str, np.ndarray]]]],
    predictions: dict[str, dict[str, bool]],
    calibrate: str,
) -> dict[str, object]:
    """The gate and the model together, on every set whose questions and twins all have predictions."""
    grids, model_alone = {}, {}
    for name, (qids, signals) in scored.items():
        if not all(qid in predictions and f"{qid}:noans" in predictions for qid in qids):
            continue
        exact = np.array([predictions[qid]["exact"] for qid in qids])
        model_abstains = np.array([predictions[f"{qid}:noans"]["abstained"] for qid in qids])
        cosine = signals["cosine"]
        model_alone[name] = _joint_at(exact, model_abstains)
        grids[name] = {
            f"{t:.4f}": _joint_at(exact & (cosine["has_ans"] >= t), model_abstains | (cosine["no_ans"] < t))
            for t in JOINT_GRID
        }
    if calibrate not in grids:
        raise SystemExit(f"--predictions lack some of {calibrate}'s questions or their :noans twins")
    best = max(grids[calibrate], key=lambda t: (grids[calibrate][t]["exact"], -float(t)))
    return {
        "threshold": float(best),
        "at_threshold": {name: grid[best] for name, grid in grids.items()},
        "model_alone": model_alone,
        "grid": grids,
    }


def _joint_at(has_ans_right: np.ndarray, no_ans_right: np.ndarray) -> dict[str, float]:
    """HasAns exact, NoAns accuracy and exact over both, from each question's and each twin's outcome."""
    return {
        "has_ans_exact": round(float(has_ans_right.mean()), 4),
        "no_ans_accuracy": round(float(no_ans_right.mean()), 4),
        "exact": round(float(np.concatenate([has_ans_right, no_ans_right]).mean()), 4),
    }


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half."""
    above = (positive[:, None] > negative[None, :]).mean()
    tied = (positive[:, None] == negative[None, :]).mean()
    return float(above + tied / 2)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", type=Path, required=True, help="Index holding the gold passages.")
    parser.add_argument("--calibrate", type=Path, required=True, help="QA JSONL the threshold is chosen on.")
    parser.add_argument(
        "--report", type=Path, nargs="*", default=[], help="QA JSONL scored at that threshold."
    )
    parser.add_argument(
        "--max-false",
        type=float,
        default=0.0,
        help="Largest share of answerable questions the gate may stop.",
    )
    parser.add_argument(
        "--predictions",
        type=Path,
        nargs="*",
        default=[],
        help="An adapter's predictions.jsonl on the mixed sets: also score the gate and the model together.",
    )
    parser.add_argument("--out", type=Path, default=None, help="Also write the results (JSON) here.")
    return parser.parse_args()


if __name__ == "__main__":
    main()
