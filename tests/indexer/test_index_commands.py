"""`kotae index build|add|remove|info` through the CLI."""

from pathlib import Path

import pytest
from jsonl_files import write_jsonl
from typer.testing import CliRunner

from kotae.core.errors import KotaeError
from kotae.indexer.commands import index_app
from kotae.indexer.index import Index

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(index_app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def squeezed(text: str) -> str:
    """Output without spaces and table borders: rich folds long cells over several lines."""
    return "".join(text.replace("│", " ").split())


def test_build_add_remove_info(corpus: Path, tiny_e5: Path, tmp_path: Path) -> None:
    out = tmp_path / "index"
    output = invoke(
        "build",
        str(corpus),
        "--out",
        str(out),
        "--type",
        "hnsw",
        "--param",
        "M=8",
        "--param",
        "ef_search=32",
        "--chunk-chars",
        "300",
        "--embedder",
        str(tiny_e5),
    )
    assert f"built {out}: 6 passages from 6 documents" in output
    manifest = Index.open(out).manifest
    assert manifest.dense.model_dump() == {"type": "hnsw", "M": 8, "ef_construction": 200, "ef_search": 32}
    assert manifest.chunk_chars == 300 and manifest.embedder.name == "tiny-e5"

    new = write_jsonl(tmp_path / "new.jsonl", [{"id": "p-new", "title": "新", "text": "新しい文。"}])
    assert "7 passages" in invoke("add", str(new), "--index", str(out), "--embedder", str(tiny_e5))
    assert "5 passages" in invoke("remove", "p-new", "p-mikan", "--index", str(out))

    info = squeezed(invoke("info", str(out)))  # the table wraps long cells
    for expected in ("5 from 5 documents", "tiny-e5", "hnsw M=8", "sudachi mode C", str(corpus), str(new)):
        assert squeezed(expected) in info


def test_no_bm25_and_bad_params(corpus: Path, tiny_e5: Path, tmp_path: Path) -> None:
    invoke(
        "build",
        str(corpus),
        "--out",
        str(tmp_path / "dense-only"),
        "--no-bm25",
        "--embedder",
        str(tiny_e5),
    )
    assert "bm25none" in squeezed(invoke("info", str(tmp_path / "dense-only")))
    with pytest.raises(KotaeError, match="expected KEY=VALUE"):
        runner.invoke(
            index_app,
            ["build", str(corpus), "--out", str(tmp_path / "x"), "--param", "M"],
            catch_exceptions=False,
        )


def test_build_a_collection_under_the_collections_root(
    corpus: Path, tiny_e5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kotae.core.config import get_settings

    monkeypatch.setenv("KOTAE_COLLECTIONS_DIR", str(tmp_path / "collections"))
    get_settings.cache_clear()
    try:
        build = ["build", str(corpus), "--embedder", str(tiny_e5), "--workers", "0"]
        assert "6 passages" in invoke(*build, "--collection", "manuals")
        assert len(Index.open(tmp_path / "collections" / "manuals")) == 6
        for wrong, message in [
            ([], "give either --out DIRECTORY or --collection NAME"),
            (["--collection", "x", "--out", str(tmp_path / "x")], "give either --out"),
            (["--collection", "../escape"], "collection name '../escape'"),
        ]:
            with pytest.raises(KotaeError, match=message):
                runner.invoke(index_app, build + wrong, catch_exceptions=False)
    finally:
        get_settings.cache_clear()


def test_builds_and_updates_load_an_embedder_without_question_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    from kotae.indexer import commands, embedder

    options: dict = {}
    monkeypatch.setattr(embedder, "load_embedder", lambda *args, **kwargs: options.update(kwargs))
    commands._embedder("some-embedder")
    assert options["cuda_graphs"] is False
