"""`kotae eval --target URL` against a stand-in for the server's `/v1/qa` on loopback: it checks the
client side of the contract (request body, reply schema, concurrency, failures), not answering."""

import asyncio
import json
import socket
import threading

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from jsonl_files import write_jsonl
from typer.testing import CliRunner

from kotae.core.errors import KotaeError
from kotae.evals.commands import eval_app
from kotae.evals.config import EvalConfig
from kotae.evals.runner import run_eval

ANSWERS = {"鳥の名は？": "「ツバメ」", "花の色は？": "白い花です", "星の数は？": "３つ"}
FAILING = "壊れた質問？"


def stand_in_app(seen):
    app = FastAPI()
    in_flight = 0

    @app.post("/v1/qa")
    async def qa(body: dict):
        nonlocal in_flight
        seen["bodies"].append(body)
        in_flight += 1
        seen["max_in_flight"] = max(seen["max_in_flight"], in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        if body["question"] == FAILING:
            raise HTTPException(500, "boom")
        sources = [{"id": f"p{i}", "title": f"題{i}", "score": 1.0 / i} for i in range(1, body["top_k"] + 1)]
        return {
            "answer": ANSWERS[body["question"]],
            "answerable": True,
            "sources": sources,
            "collection": "default",
            "model": "stand-in",
            "adapter": body.get("adapter"),
            "finish_reason": "length" if body["question"] == "花の色は？" else "stop",
            "usage": {"prompt_tokens": 100, "completion_tokens": 5, "total_tokens": 105},
            "timings": {"retrieve_ms": 3.0, "generate_ms": 40.0},
        }

    return app


@pytest.fixture(scope="module")
def server():
    seen = {"bodies": [], "max_in_flight": 0}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    instance = uvicorn.Server(uvicorn.Config(stand_in_app(seen), log_level="warning"))
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not instance.started:
        threading.Event().wait(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def qa_file(tmp_path):
    rows = [
        {"qid": "q1", "question": "鳥の名は？", "answers": ["ツバメ"], "gold_passage_ids": ["p2"]},
        {"qid": "q2", "question": "花の色は？", "answers": ["白"], "gold_passage_ids": ["p9"]},
        {"qid": "q3", "question": "星の数は？", "answers": ["3つ", "三つ"]},
        {"qid": "q4", "question": FAILING, "answers": ["何か"], "gold_passage_ids": ["p1"]},
    ]
    return write_jsonl(tmp_path / "qa.jsonl", rows)


def test_eval_over_http_scores_and_records_every_question(server, qa_file, tmp_path):
    url, seen = server
    seen["bodies"].clear()
    config = EvalConfig(data=qa_file, target=url, adapter="sft", concurrency=2, top_k=3, out=tmp_path / "run")
    report = run_eval(config)
    metrics = report.metrics

    assert seen["max_in_flight"] <= 2
    assert {b["question"] for b in seen["bodies"]} == {*ANSWERS, FAILING}
    assert seen["bodies"][0] | {"question": ""} == {
        "question": "",
        "top_k": 3,
        "adapter": "sft",
        "max_tokens": 64,
        "temperature": 0.0,
    }
    assert (metrics.run.model, metrics.run.adapter, metrics.run.n) == ("stand-in", "sft", 4)
    assert metrics.errors == 1 and metrics.finish_reasons == {"stop": 2, "length": 1, "error": 1}
    # ツバメ and ３つ are exact after normalization; 白い花です only contains 白; the failure scores 0.
    assert (metrics.answer.exact, metrics.answer.partial) == (0.5, 0.75)
    # Over HTTP the ranking is the top_k sources: recall@5 and @20 cannot be measured with top_k=3.
    assert metrics.retrieval.n == 3 and metrics.retrieval.recall_at == {1: 0.0}
    assert metrics.retrieval.mrr == pytest.approx((1 / 2 + 0 + 0) / 3)
    assert metrics.speed.generate.p50_ms == 40.0 and metrics.speed.request.p50_ms >= 50.0
    assert metrics.memory.gpu_peak_mb is None and metrics.memory.peak_rss_mb is None

    lines = (tmp_path / "run" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    rows = {row["qid"]: row for row in map(json.loads, lines)}
    assert rows["q1"]["prediction"] == "「ツバメ」" and rows["q1"]["exact"]
    assert rows["q1"]["sources"][1] == {"id": "p2", "title": "題2", "score": 0.5}
    assert rows["q3"]["recall_at"] is None  # no gold passage ids
    assert rows["q4"]["error"].startswith("HTTP 500")
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["run"]["target"] == url
    assert (tmp_path / "run" / "row.md").read_text().startswith("| stand-in | sft | — | 0.500 | 0.750 |")


def test_given_contexts_are_refused_over_http(server, tmp_path):
    url, _ = server
    path = tmp_path / "given.jsonl"
    path.write_text('{"question": "鳥の名は？", "answers": ["ツバメ"], "ctxs": ["ツバメの話。"]}\n')
    with pytest.raises(KotaeError, match="not supported over HTTP"):
        run_eval(EvalConfig(data=path, target=url, contexts="given", out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_an_unreachable_server_fails_the_run(qa_file, tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(KotaeError, match="every request"):
        run_eval(EvalConfig(data=qa_file, target=f"http://127.0.0.1:{port}", out=tmp_path / "run"))


def test_bad_targets_and_reused_run_directories_are_refused(server, qa_file, tmp_path):
    with pytest.raises(KotaeError, match="--target"):
        run_eval(EvalConfig(data=qa_file, target="localhost:8000"))
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "metrics.json").write_text("{}")
    with pytest.raises(KotaeError, match="already holds an eval run"):
        run_eval(EvalConfig(data=qa_file, target=server[0], out=tmp_path / "done"))


def test_eval_command_over_http(server, qa_file, tmp_path):
    url, _ = server
    out = tmp_path / "cli-run"
    result = CliRunner().invoke(
        eval_app, ["--data", str(qa_file), "--target", url, "--out", str(out), "--label", "stand-in run"]
    )
    assert result.exit_code == 0, result.output
    assert "4/4" in result.output and "1 failed" in result.output
    assert json.loads((out / "metrics.json").read_text())["run"]["label"] == "stand-in run"


def test_eval_command_needs_data():
    result = CliRunner().invoke(eval_app, ["--limit", "3"])
    assert result.exit_code == 2 and "--data" in result.output
