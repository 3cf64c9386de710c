"""Eval runs on disk for the comparison tests: a run's metrics.json, as `kotae eval` writes it."""

from kotae.evals.schema import (
    AnswerMetrics,
    EvalMetrics,
    MemoryMetrics,
    RetrievalMetrics,
    RunInfo,
    SpeedMetrics,
)


def sample_metrics(adapter=None, quantization="bf16", gpu_mb=None, label=None, n=300, recall=True):
    return EvalMetrics(
        run=RunInfo(
            label=label,
            model="gemma-3-270m",
            adapter=adapter,
            quantization=quantization,
            dataset="jsquad-valid.jsonl",
            data_path="../shared/data/qa/jsquad-valid.jsonl",
            n=n,
            contexts="retrieved",
            top_k=5,
            retrieval_depth=20,
            retrieval_mode="hybrid",
            target="inprocess",
            device="NVIDIA H100 80GB HBM3",
            date="2025-01-01T00:00:00+00:00",
            kotae_version="0.1.0",
            prompt_version="alpaca-ja-v1",
            max_tokens=64,
            temperature=0.0,
        ),
        answer=AnswerMetrics(exact=0.25, partial=0.5, char_f1=0.4567),
        retrieval=RetrievalMetrics(n=n, recall_at={1: 0.5, 5: 0.8, 20: 0.9}, mrr=0.6) if recall else None,
        speed=SpeedMetrics(
            load_s=30.0,
            wall_s=12.345,
            questions_per_s=n / 12.345,
            retrieve=None,
            generate=None,
            first_token=None,
            request=None,
            prompt_tokens_mean=900.0,
            completion_tokens_mean=12.0,
        ),
        memory=MemoryMetrics(peak_rss_mb=2000, peak_rss_children_mb=0, gpu_peak_mb=gpu_mb, gpu_source=None),
        errors=0,
        finish_reasons={"stop": n},
    )


def save(tmp_path, name, metrics):
    run = tmp_path / name
    run.mkdir()
    (run / "metrics.json").write_text(metrics.model_dump_json(indent=2))
    return run
