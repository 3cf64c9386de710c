"""Concurrent requests share retrieval batches; each gets its own result, or its own batch's error."""

import asyncio
import threading
import time

import pytest

from kotae.rag.pipeline import PreparedQuestion
from kotae.rag.retrieval_batcher import RetrievalBatch, RetrievalBatcher
from kotae.rag.stage_times import StageTimes


class RecordingPrepare:
    """`Pipeline.prepare_many` stand-in: records each batch; slow enough for requests to pile up."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.batches: list[tuple[list[str], int | None, str | None, str | None, str]] = []
        self.started: list[float] = []
        self.seconds = seconds
        self.lock = threading.Lock()

    def __call__(
        self, questions, top_k, mode, collection, prompt_format, times: StageTimes
    ) -> list[PreparedQuestion]:
        with self.lock:
            self.batches.append((list(questions), top_k, mode, collection, prompt_format))
            self.started.append(time.perf_counter())
        with times.stage("embed"):
            time.sleep(self.seconds)
        if mode == "bm25":
            raise ValueError("this index has no BM25 part")
        return [
            PreparedQuestion(q, [], False, f"{q}|{top_k}|{mode}|{collection}", 0.0, None) for q in questions
        ]


def test_requests_arriving_together_are_one_batch_and_each_gets_its_own_prompt():
    prepare = RecordingPrepare()
    batcher = RetrievalBatcher(prepare, max_batch=64)

    async def ask_all():
        return await asyncio.gather(*(batcher.prepare(f"q{i}", 5, None) for i in range(10)))

    results = asyncio.run(ask_all())
    assert [r.prompt for r in results] == [f"q{i}|5|None|None" for i in range(10)]
    assert [len(questions) for questions, *_ in prepare.batches] == [10]
    assert all(r.retrieve_ms >= 40 for r in results)  # the batch's wall time, not a share of it


def test_requests_that_arrive_during_a_batch_wait_for_the_next_one_up_to_the_batch_limit():
    prepare = RecordingPrepare()
    batcher = RetrievalBatcher(prepare, max_batch=4)

    async def two_waves():
        first = asyncio.ensure_future(batcher.prepare("early", None, None))
        await asyncio.sleep(0.01)  # the first batch (of one) is running now
        later = await asyncio.gather(*(batcher.prepare(f"late{i}", None, None) for i in range(6)))
        return [await first, *later]

    results = asyncio.run(two_waves())
    assert [r.question for r in results] == ["early", *(f"late{i}" for i in range(6))]
    assert [len(questions) for questions, *_ in prepare.batches] == [1, 4, 2]


def test_each_batch_reports_its_size_its_questions_wait_and_its_stages():
    prepare = RecordingPrepare()
    batcher = RetrievalBatcher(prepare, max_batch=4)
    reports: list[RetrievalBatch] = []
    batcher.on_batch = reports.append

    async def two_waves():
        first = asyncio.ensure_future(batcher.prepare("early", None, None))
        await asyncio.sleep(0.01)
        await asyncio.gather(first, *(batcher.prepare(f"late{i}", None, None) for i in range(3)))

    asyncio.run(two_waves())
    assert [report.size for report in reports] == [1, 3]
    assert [len(report.queued_ms) for report in reports] == [1, 3]
    assert reports[0].queued_ms[0] < 30  # an idle batcher starts at once
    assert all(wait >= 25 for wait in reports[1].queued_ms)  # the late ones waited for the first batch
    assert all(report.stage_ms["embed"] >= 45 for report in reports)


def test_settings_split_a_batch_and_an_error_reaches_only_its_own_group():
    prepare = RecordingPrepare()
    batcher = RetrievalBatcher(prepare, max_batch=64)

    async def mixed():
        return await asyncio.gather(
            batcher.prepare("a", 3, None),
            batcher.prepare("b", 3, "bm25"),
            batcher.prepare("c", 5, None),
            batcher.prepare("d", 3, None),
            batcher.prepare("e", 3, None, "manuals"),
            batcher.prepare("f", 3, None, None, "chat-template"),
            return_exceptions=True,
        )

    a, b, c, d, e, _ = asyncio.run(mixed())
    assert (a.prompt, c.prompt, d.prompt) == ("a|3|None|None", "c|5|None|None", "d|3|None|None")
    assert e.prompt == "e|3|None|manuals"
    assert isinstance(b, ValueError)
    assert sorted(prepare.batches, key=str) == sorted(
        [
            (["a", "d"], 3, None, None, "alpaca-ja"),
            (["b"], 3, "bm25", None, "alpaca-ja"),
            (["c"], 5, None, None, "alpaca-ja"),
            (["e"], 3, None, "manuals", "alpaca-ja"),
            (["f"], 3, None, None, "chat-template"),
        ],
        key=str,
    )


def test_a_cancelled_request_leaves_the_batch_and_the_others_unharmed():
    prepare = RecordingPrepare()
    batcher = RetrievalBatcher(prepare, max_batch=64)

    async def cancel_one():
        first = asyncio.ensure_future(batcher.prepare("first", None, None))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.prepare("gone", None, None))
        kept = asyncio.ensure_future(batcher.prepare("kept", None, None))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await first, await kept

    first, kept = asyncio.run(cancel_one())
    assert (first.question, kept.question) == ("first", "kept")
    assert [questions for questions, *_ in prepare.batches] == [["first"], ["kept"]]


def test_a_batcher_outlives_an_event_loop_that_stopped_mid_batch():
    """Tests and commands run one event loop after another on the same pipeline; a loop may stop while
    its batch is still being retrieved, leaving that batch's worker pending forever."""
    prepare = RecordingPrepare(seconds=0.2)
    batcher = RetrievalBatcher(prepare, max_batch=64)
    first = asyncio.new_event_loop()
    abandoned = first.create_task(batcher.prepare("first loop", None, None))
    first.run_until_complete(asyncio.sleep(0.05))  # the batch is in its thread now
    first.close()
    assert not abandoned.done()

    second = asyncio.run(asyncio.wait_for(batcher.prepare("second loop", None, None), 5))
    assert second.question == "second loop"


def test_the_next_batch_is_retrieved_while_the_event_loop_is_busy():
    """The loop that serves requests and the engine's outputs can be busy for a while: the questions that
    arrived during a batch are retrieved as soon as it ends, not when the loop next gets to them."""
    prepare = RecordingPrepare()
    batcher = RetrievalBatcher(prepare, max_batch=64)

    async def busy_loop():
        first = asyncio.ensure_future(batcher.prepare("first", None, None))
        await asyncio.sleep(0.01)  # the first batch is being retrieved
        second = asyncio.ensure_future(batcher.prepare("second", None, None))
        await asyncio.sleep(0)  # queued for the next batch
        time.sleep(0.3)  # the loop busy while the first batch ends
        released = time.perf_counter()
        await asyncio.gather(first, second)
        return released

    released = asyncio.run(busy_loop())
    assert [questions for questions, *_ in prepare.batches] == [["first"], ["second"]]
    assert prepare.started[1] < released


def test_a_loop_that_closed_before_starting_the_retrieval_does_not_stall_the_next():
    prepare = RecordingPrepare()
    batcher = RetrievalBatcher(prepare, max_batch=64)
    closed = asyncio.new_event_loop()
    lost = closed.create_task(batcher.prepare("lost", None, None))
    closed.call_soon(closed.stop)  # in the request's own turn: the retrieval's start is left queued
    closed.run_forever()
    closed.close()
    assert prepare.batches == [] and not lost.done()

    answer = asyncio.run(asyncio.wait_for(batcher.prepare("next", None, None), 5))
    assert answer.question == "next"
    assert [questions for questions, *_ in prepare.batches] == [["next"]], "nobody waits for the lost one"


def test_a_batch_whose_report_fails_gets_the_error_and_the_next_batch_still_runs():
    prepare = RecordingPrepare()
    batcher = RetrievalBatcher(prepare, max_batch=64)
    reports: list[RetrievalBatch] = []

    def report(batch: RetrievalBatch) -> None:
        reports.append(batch)
        if len(reports) == 1:
            raise RuntimeError("metrics broke")

    batcher.on_batch = report

    async def two_batches():
        with pytest.raises(RuntimeError, match="metrics broke"):
            await asyncio.wait_for(batcher.prepare("first", None, None), 5)
        return await asyncio.wait_for(batcher.prepare("second", None, None), 5)

    assert asyncio.run(two_batches()).question == "second"
