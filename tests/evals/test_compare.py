import pytest
from rich.console import Console
from run_fixtures import sample_metrics, save
from typer.testing import CliRunner

from kotae.core.errors import InputError
from kotae.evals.commands import eval_app
from kotae.evals.compare import load_run, markdown_table, mismatches, rich_table, write_chart


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
