"""`run_eval`: ask every question of a dataset, score the answers, time it, write the run directory.

A run directory holds `predictions.jsonl` (one `PredictionRow` per question), `metrics.json`
(`EvalMetrics`) and `row.md` (the run as one row of the comparison table).
"""

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from kotae.core.config import Settings, get_settings
from kotae.core.errors import InputError, KotaeError
from kotae.core.qa_jsonl import QAItem
from kotae.evals.compare import BASE_MODEL, cells, markdown_row
from kotae.evals.config import EvalConfig
from kotae.evals.datasets import dataset_name, load_dataset
from kotae.evals.memory import GpuMemoryMonitor, peak_rss_mb
from kotae.evals.openai_engine import check_endpoint
from kotae.evals.openai_target import openai_target, openai_url
from kotae.evals.retrieval_process import RetrievalProcess
from kotae.evals.schema import (
    IN_PROCESS,
    METRICS_FILE,
    PREDICTIONS_FILE,
    ROW_FILE,
    AbstentionMetrics,
    AnswerMetrics,
    EvalMetrics,
    MemoryMetrics,
    PredictionRow,
    RetrievalMetrics,
    RunInfo,
    SourceRow,
    SpeedMetrics,
    StageStats,
)
from kotae.evals.speed import stage_stats
from kotae.evals.targets import (
    BATCH_STAGE_PREFIX,
    AskOptions,
    HttpTarget,
    InProcessTarget,
    TargetAnswer,
    TargetRun,
)
from kotae.rag.engine_protocol import Sampling
from kotae.rag.metrics import AnswerScore, recall_depth, score_answer, score_retrieval
from kotae.rag.pipeline import Pipeline
from kotae.rag.prompt import PROMPT_VERSION

RUNS_DIR = Path("runs/eval")


@dataclass(frozen=True, slots=True)
class EvalReport:
    out_dir: Path
    metrics: EvalMetrics
    predictions: list[PredictionRow]


Progress = Callable[[int, int], None]
"""Called with (questions answered, questions in the run): once at the start, then after each answer."""


def run_eval(
    config: EvalConfig, pipeline: Pipeline | None = None, on_progress: Progress | None = None
) -> EvalReport:
    """Run one eval. In-process, `pipeline` (if given) is used as it is and left running; otherwise one
    is built from settings and shut down at the end."""
    return asyncio.run(evaluate(config, pipeline, on_progress))


async def evaluate(
    config: EvalConfig, pipeline: Pipeline | None = None, on_progress: Progress | None = None
) -> EvalReport:
    """`run_eval` for callers already inside an event loop (a vLLM engine stays bound to its loop)."""
    in_process = config.target == IN_PROCESS
    endpoint = openai_url(config.target)
    if not in_process and endpoint is None and not re.match(r"https?://", config.target):
        raise KotaeError(
            f"--target must be `{IN_PROCESS}`, an http(s):// URL or openai:URL, not {config.target!r}"
        )
    if endpoint is not None:
        # Before the index opens: a bad URL or model fails in seconds.
        await check_endpoint(endpoint, _openai_model(config))
    elif config.model is not None:
        raise KotaeError("--model names the model of an openai:URL target; other targets name their own")
    settings = pipeline.settings if pipeline is not None else get_settings()
    started_at = datetime.now().astimezone()
    items = load_dataset(config.data, config.limit)
    if config.contexts == "given":
        _require_contexts(config.data, items)
    out_dir = _out_dir(config, started_at)
    top_k = config.top_k or settings.top_k
    ask = AskOptions(
        top_k=top_k,
        retrieval_depth=recall_depth(top_k),
        contexts=config.contexts,
        adapter=config.adapter,
        sampling=Sampling(max_tokens=settings.max_tokens, temperature=0.0),
    )
    done = _counter(len(items), on_progress)
    load_s = None
    if in_process:
        with GpuMemoryMonitor() as gpu:
            run, load_s = await _run_in_process(items, ask, pipeline, settings, done)
        rss, rss_children = peak_rss_mb()
        memory = MemoryMetrics(
            peak_rss_mb=rss, peak_rss_children_mb=rss_children, gpu_peak_mb=gpu.peak_mb, gpu_source=gpu.source
        )
    else:
        if endpoint is not None:
            model = _openai_model(config)
            target = openai_target(endpoint, model, config.openai_api, config.concurrency, settings, pipeline)
            run = await target.answer_all(items, ask, done)
        else:
            run = await HttpTarget(config.target, config.concurrency).answer_all(items, ask, done)
        # This process is only the client: its memory says nothing about the server's.
        memory = MemoryMetrics(peak_rss_mb=None, peak_rss_children_mb=None, gpu_peak_mb=None, gpu_source=None)
    rows = [
        _prediction_row(item, answer, run.retrieval_depth)
        for item, answer in zip(items, run.answers, strict=True)
    ]
    metrics = EvalMetrics(
        run=_run_info(config, ask, run, len(items), started_at),
        answer=_answer_metrics(rows),
        abstention=_abstention_metrics(rows),
        retrieval=_retrieval_metrics(rows),
        speed=_speed_metrics(run, load_s, len(items)),
        memory=memory,
        errors=sum(row.error is not None for row in rows),
        finish_reasons=dict(Counter(row.finish_reason or "unknown" for row in rows)),
    )
    _write_run(out_dir, metrics, rows)
    return EvalReport(out_dir, metrics, rows)


def _openai_model(config: EvalConfig) -> str:
    if config.model is None:
        raise KotaeError(
            "an openai:URL target needs --model: the model's name at the endpoint (its /v1/models)"
        )
    return config.model


async def _run_in_process(
    items: Sequence[QAItem],
    ask: AskOptions,
    pipeline: Pipeline | None,
    settings: Settings,
    on_answer: Callable[[], None],
) -> tuple[TargetRun, float | None]:
    if pipeline is not None:
        return await InProcessTarget(pipeline).answer_all(items, ask, on_answer), None
    from kotae.runtime import build_pipeline

    started = time.perf_counter()
    # Submitted before the build blocks this thread: deciding imports vLLM (seconds, which the build, which
    # imports it too, spends beside opening the collections), and the process opens its retriever meanwhile.
    early = asyncio.get_running_loop().run_in_executor(None, _early_retrieval, settings, ask)
    retrieval: RetrievalProcess | None = None
    try:
        built = build_pipeline(settings, workload="batch")
        try:
            retrieval = await early
            if retrieval is None and settings.index is None and _retrieves_apart(settings, ask):
                retrieval = RetrievalProcess.start(settings)
            if retrieval is not None:
                await asyncio.to_thread(retrieval.wait_ready)
            load_s = time.perf_counter() - started
            return await InProcessTarget(built, retrieval).answer_all(items, ask, on_answer), load_s
        finally:
            built.shutdown()
    finally:
        if retrieval is None:
            with contextlib.suppress(Exception):  # the build's own error is the one to raise
                retrieval = await early
        if retrieval is not None:
            retrieval.close()


def _early_retrieval(settings: Settings, ask: AskOptions) -> RetrievalProcess | None:
    """The retrieval process, started before the pipeline is built, where the questions are ranked apart
    from an index that is there already (the demo index is built by the pipeline's first use)."""
    if settings.index is None or not _retrieves_apart(settings, ask):
        return None
    return RetrievalProcess.start(settings)


def _retrieves_apart(settings: Settings, ask: AskOptions) -> bool:
    """Whether the questions are ranked in a process of their own (`Settings.eval_retrieval_process`)."""
    if ask.contexts == "given":
        return False
    if settings.eval_retrieval_process is not None:
        return settings.eval_retrieval_process
    from vllm.platforms import current_platform

    return current_platform.is_cuda_alike()


def _counter(total: int, on_progress: Progress | None) -> Callable[[], None]:
    answered = 0
    if on_progress is not None:
        on_progress(answered, total)

    def count() -> None:
        nonlocal answered
        answered += 1
        if on_progress is not None:
            on_progress(answered, total)

    return count


def _require_contexts(path: Path, items: Sequence[QAItem]) -> None:
    missing = next((item for item in items if not item.contexts), None)
    if missing is not None:
        raise InputError(
            path, None, f"--contexts given needs passages with every question; {missing.qid!r} has none"
        )


def _out_dir(config: EvalConfig, started_at: datetime) -> Path:
    if config.out is None:
        adapter = "default" if config.adapter is None else config.adapter or BASE_MODEL
        name = config.label or adapter
        stem = f"{started_at:%Y%m%d-%H%M%S}-{config.data.stem}-{name}"
        return RUNS_DIR / re.sub(r"[^\w.-]+", "_", stem)
    if (config.out / METRICS_FILE).exists():
        raise KotaeError(f"{config.out} already holds an eval run; choose another --out")
    return config.out


def _run_info(config: EvalConfig, ask: AskOptions, run: TargetRun, n: int, started_at: datetime) -> RunInfo:
    return RunInfo(
        label=config.label,
        model=run.model,
        adapter=run.adapter,
        quantization=run.quantization,
        dataset=dataset_name(config.data),
        data_path=str(config.data),
        n=n,
        contexts=config.contexts,
        top_k=ask.top_k,
        retrieval_depth=run.retrieval_depth,
        retrieval_mode=run.retrieval_mode,
        target=config.target,
        device=run.device,
        date=started_at.isoformat(timespec="seconds"),
        kotae_version=version("kotae"),
        prompt_version=PROMPT_VERSION,
        max_tokens=ask.sampling.max_tokens,
        temperature=ask.sampling.temperature,
    )


def _prediction_row(item: QAItem, answer: TargetAnswer, depth: int | None) -> PredictionRow:
    if item.answerable:
        scores = score_answer(answer.text, item.answers)
    else:
        right = not answer.answerable
        scores = AnswerScore(exact=right, partial=right, char_f1=float(right))
    retrieval = None
    if answer.ranked_ids is not None and item.gold_passage_ids and depth and item.answerable:
        retrieval = score_retrieval(answer.ranked_ids, item.gold_passage_ids, depth)
    return PredictionRow(
        qid=item.qid,
        question=item.question,
        golds=list(item.answers),
        answerable=item.answerable,
        prediction=answer.text,
        abstained=not answer.answerable,
        sources=[SourceRow(id=h.passage.id, title=h.passage.title, score=h.score) for h in answer.sources],
        retrieved_ids=answer.ranked_ids,
        exact=scores.exact,
        partial=scores.partial,
        char_f1=scores.char_f1,
        recall_at=None if retrieval is None else retrieval.recall,
        reciprocal_rank=None if retrieval is None else retrieval.reciprocal_rank,
        finish_reason=answer.finish_reason,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        error=answer.error,
    )


def _answer_metrics(rows: Sequence[PredictionRow]) -> AnswerMetrics:
    return AnswerMetrics(
        exact=_mean([row.exact for row in rows]),
        partial=_mean([row.partial for row in rows]),
        char_f1=_mean([row.char_f1 for row in rows]),
    )


def _abstention_metrics(rows: Sequence[PredictionRow]) -> AbstentionMetrics:
    has_ans = [row for row in rows if row.answerable]
    no_ans = [row for row in rows if not row.answerable]
    return AbstentionMetrics(
        has_ans_n=len(has_ans),
        has_ans=_answer_metrics(has_ans) if has_ans else None,
        has_ans_abstained=_mean([row.abstained for row in has_ans]) if has_ans else None,
        no_ans_n=len(no_ans),
        no_ans_accuracy=_mean([row.abstained for row in no_ans]) if no_ans else None,
    )


def _retrieval_metrics(rows: Sequence[PredictionRow]) -> RetrievalMetrics | None:
    scored = [row for row in rows if row.recall_at is not None and row.reciprocal_rank is not None]
    if not scored:
        return None
    ks = sorted(set.intersection(*(set(row.recall_at or {}) for row in scored)))
    return RetrievalMetrics(
        n=len(scored),
        recall_at={k: _mean([(row.recall_at or {})[k] for row in scored]) for k in ks},
        mrr=_mean([row.reciprocal_rank or 0.0 for row in scored]),
    )


def _speed_metrics(run: TargetRun, load_s: float | None, n: int) -> SpeedMetrics:
    def stage(name: str) -> StageStats | None:
        return stage_stats(run.stage_ms.get(name, []), run.stage_notes.get(name))

    prompt_tokens = [a.prompt_tokens for a in run.answers if a.prompt_tokens is not None]
    completion_tokens = [a.completion_tokens for a in run.answers if a.completion_tokens is not None]
    batch_stages = {
        name.removeprefix(BATCH_STAGE_PREFIX): samples
        for name, samples in run.stage_ms.items()
        if name.startswith(BATCH_STAGE_PREFIX)
    }
    return SpeedMetrics(
        load_s=load_s,
        wall_s=run.wall_s,
        retrieved_s=run.retrieved_s,
        questions_per_s=n / run.wall_s if run.wall_s > 0 else 0.0,
        retrieve=stage("retrieve"),
        generate=stage("generate"),
        first_token=stage("first_token"),
        request=stage("request"),
        prompt_tokens_mean=_mean(prompt_tokens) if prompt_tokens else None,
        completion_tokens_mean=_mean(completion_tokens) if completion_tokens else None,
        batch_stages_ms={name: round(sum(samples), 3) for name, samples in batch_stages.items()},
        batches=len(batch_stages["prompt"]) if "prompt" in batch_stages else None,
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _write_run(out_dir: Path, metrics: EvalMetrics, rows: Sequence[PredictionRow]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / PREDICTIONS_FILE).open("w", encoding="utf-8") as lines:
        for row in rows:
            lines.write(row.model_dump_json() + "\n")
    (out_dir / METRICS_FILE).write_text(metrics.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (out_dir / ROW_FILE).write_text(markdown_row(cells(metrics)) + "\n", encoding="utf-8")
