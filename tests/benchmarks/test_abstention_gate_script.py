"""`benchmarks/abstention_gate.py` scores the retrieval gate alone and, given an adapter's predictions, the
gate and the model together, choosing the joint threshold on the calibration set."""

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import PASSAGES, QUESTIONS, load_script, run_script
from jsonl_files import write_jsonl

from kotae.indexer.embedder import Embedder

Scored = tuple[list[str], dict[str, dict[str, np.ndarray]]]


def scored(has_ans: list[float], no_ans: list[float], prefix: str = "q") -> Scored:
    """Questions q0, q1, … with these best cosines, without and with their gold article, as `_scores`
    returns them."""
    cosine = {"has_ans": np.array(has_ans), "no_ans": np.array(no_ans)}
    return [f"{prefix}{i}" for i in range(len(has_ans))], {"cosine": cosine}


def predicted(exact: list[bool], twin_abstained: list[bool], prefix: str = "q") -> dict[str, dict[str, bool]]:
    """Predictions for questions q0, q1, … (answered, `exact` or not) and their twins (abstained or not)."""
    rows = {f"{prefix}{i}": {"exact": right, "abstained": False} for i, right in enumerate(exact)}
    rows |= {f"{prefix}{i}:noans": {"exact": a, "abstained": a} for i, a in enumerate(twin_abstained)}
    return rows


def test_the_joint_threshold_is_chosen_on_the_calibration_set() -> None:
    gate = load_script("abstention_gate")
    # q2's twin is answered by the model but its best cosine (0.80) is below every answerable question's.
    calibrate = scored(has_ans=[0.86, 0.84, 0.85], no_ans=[0.82, 0.83, 0.80])
    report = scored(has_ans=[0.805, 0.87], no_ans=[0.79, 0.86], prefix="r")
    predictions = predicted([True, True, False], [True, True, False])
    predictions |= predicted([True, True], [False, False], prefix="r")

    joint = gate._joint({"cal": calibrate, "rep": report}, predictions, "cal")

    two_thirds = {"has_ans_exact": 0.6667, "no_ans_accuracy": 0.6667, "exact": 0.6667}
    assert joint["model_alone"]["cal"] == two_thirds
    # From 0.8025 the gate stops q2's twin and no answerable question: the lowest such threshold wins.
    assert joint["threshold"] == 0.8025
    assert joint["at_threshold"]["cal"] == {"has_ans_exact": 0.6667, "no_ans_accuracy": 1.0, "exact": 0.8333}
    # At 0.8025 the report set's r0 (0.805) still passes and r0's twin (0.79) is stopped.
    assert joint["at_threshold"]["rep"] == {"has_ans_exact": 1.0, "no_ans_accuracy": 0.5, "exact": 0.75}
    assert joint["grid"]["rep"]["0.8100"]["has_ans_exact"] == 0.5, "above 0.805 the gate stops r0"


def test_predictions_must_cover_the_calibration_set() -> None:
    gate = load_script("abstention_gate")
    calibrate = scored(has_ans=[0.86, 0.84], no_ans=[0.82, 0.83])
    with pytest.raises(SystemExit, match="cal"):
        gate._joint({"cal": calibrate}, predicted([True], [True]), "cal")


def test_the_script_scores_the_gate_and_the_model_together(
    tiny_e5: Path, embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kotae.indexer.build import build_index

    build_index([write_jsonl(tmp_path / "corpus.jsonl", PASSAGES)], tmp_path / "index", embedder)
    answerable = QUESTIONS[:2]  # q3's gold passage is not in the index
    qa = write_jsonl(tmp_path / "qa.jsonl", answerable)
    predictions = write_jsonl(
        tmp_path / "predictions.jsonl",
        [{"qid": q["qid"], "exact": True, "abstained": False} for q in answerable]
        + [{"qid": f"{q['qid']}:noans", "exact": True, "abstained": True} for q in answerable],
    )
    out = tmp_path / "gate.json"
    monkeypatch.setenv("KOTAE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KOTAE_EMBEDDER", str(tiny_e5))
    args = ["--index", str(tmp_path / "index"), "--calibrate", str(qa), "--out", str(out)]
    run_script("abstention_gate", [*args, "--predictions", str(predictions)], monkeypatch)

    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["sets"]["qa.jsonl"]["questions"] == 2
    perfect = {"has_ans_exact": 1.0, "no_ans_accuracy": 1.0, "exact": 1.0}
    assert results["joint"]["model_alone"] == {"qa.jsonl": perfect}
