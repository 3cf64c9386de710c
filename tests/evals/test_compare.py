import pytest
from rich.console import Console
from typer.testing import CliRunner

from kotae.core.errors import InputError
from kotae.evals.commands import eval_app
from kotae.evals.compare import load_run, markdown_table, mismatches, rich_table, write_chart
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


def test_markdown_table_has_the_seed_columns():
    table = markdown_table([sample_metrics(), sample_metrics("default", "gguf", 1234.4, recall=False)])
    assert table.splitlines() == [
        "| model | adapter | quantization | exact | partial | char-F1 | recall@5 | runtime | GPU MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
        "| gemma-3-270m | base | bf16 | 0.250 | 0.500 | 0.457 | 0.800 | 12.3 s | — |",
        "| gemma-3-270m | default | gguf | 0.250 | 0.500 | 0.457 | — | 12.3 s | 1,234 |",
    ]


def test_rich_table_shows_labels_only_when_a_run_has_one():
    console = Console(record=True, width=200)
    console.print(rich_table([sample_metrics(label="baseline"), sample_metrics("sft")]))
    text = console.export_text()
    assert "label" in text and "baseline" in text and "0.457" in text
    console.print(rich_table([sample_metrics()]))
    assert "label" not in console.export_text()


def test_runs_that_do_not_compare_are_pointed_out():
    assert mismatches([sample_metrics(), sample_metrics("sft")]) == []
    assert mismatches([sample_metrics(), sample_metrics(n=100)]) == ["runs differ in n: 100, 300"]


def test_load_run_reads_a_directory_or_the_file_and_refuses_others(tmp_path):
    run = save(tmp_path, "a", sample_metrics())
    assert load_run(run) == load_run(run / "metrics.json") == sample_metrics()
    with pytest.raises(InputError, match=r"no metrics\.json"):
        load_run(tmp_path / "missing")
    (tmp_path / "bad.json").write_text('{"run": {}}')
    with pytest.raises(InputError, match="not a kotae eval metrics file"):
        load_run(tmp_path / "bad.json")


def test_chart_is_a_png(tmp_path):
    png = tmp_path / "charts" / "compare.png"
    write_chart([sample_metrics(), sample_metrics("sft", gpu_mb=900, recall=False)], png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_command_prints_the_table_and_writes_the_chart(tmp_path):
    runs = [save(tmp_path, "base", sample_metrics()), save(tmp_path, "sft", sample_metrics("sft"))]
    png = tmp_path / "compare.png"
    result = CliRunner().invoke(eval_app, ["compare", *map(str, runs), "--png", str(png), "--markdown"])
    assert result.exit_code == 0, result.output
    assert markdown_table([load_run(run) for run in runs]) in result.output, "rows must not be wrapped"
    assert png.exists()
