"""`kotae index build|add|remove|info`: build and update passage indexes from the command line."""

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from kotae.core.config import get_settings
from kotae.core.errors import KotaeError
from kotae.indexer.chunking import DEFAULT_CHUNK_CHARS
from kotae.indexer.layout import IndexType, collection_directory

if TYPE_CHECKING:
    from kotae.indexer.embedder import Embedder
    from kotae.indexer.manifest import Manifest

index_app = typer.Typer(no_args_is_help=True)
console = Console()

# Options more than one command takes.
EmbedderOption = typer.Option(None, help="Model store name or folder (default: KOTAE_EMBEDDER).")
BatchSizeOption = typer.Option(32, min=1, help="Passages per embedding batch.")
IndexToUpdate = typer.Option(..., "--index", help="Index directory to update.")


@index_app.command()
def build(
    sources: list[Path] = typer.Argument(
        ...,
        help="Passage JSONL or Parquet {id,title,text}, wikitext JSONL or Parquet {title,text}, or MediaWiki "
        "XML (.gz/.bz2 too; a multistream .bz2 dump is read in parallel).",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Index directory; an existing index is replaced atomically."
    ),
    collection: str | None = typer.Option(
        None,
        help="Build collection NAME instead of --out: the index goes under the collections root "
        "(KOTAE_COLLECTIONS_DIR), where a running server picks it up.",
    ),
    index_type: IndexType = typer.Option("flat", "--type", help="faiss index: flat (exact), hnsw or ivfpq."),
    param: list[str] = typer.Option(
        [],
        "--param",
        help="faiss parameter KEY=VALUE, repeatable: hnsw M, ef_construction, ef_search; "
        "ivfpq nlist, m, nbits, nprobe.",
    ),
    chunk_chars: int = typer.Option(DEFAULT_CHUNK_CHARS, min=20, help="Longest passage, in characters."),
    bm25: bool = typer.Option(True, "--bm25/--no-bm25", help="Also build the BM25 index (hybrid retrieval)."),
    embedder: str | None = EmbedderOption,
    batch_size: int = BatchSizeOption,
    workers: int | None = typer.Option(
        None,
        min=0,
        help="Processes that parse, clean, chunk and tokenize (default: one per core but one; 0: none).",
    ),
) -> None:
    """Build an index from SOURCES. Stopped or killed, the same command resumes it from its last stored
    shard."""
    from kotae.indexer.build import build_index
    from kotae.indexer.dense import dense_spec

    target = _build_target(out, collection)
    params = dense_spec(index_type, _params(param))  # bad parameters fail before the embedder loads
    _warn_abandoned(target)
    manifest = build_index(
        sources,
        target,
        _embedder(embedder),
        index_type=index_type,
        params=params.model_dump(exclude={"type"}),
        chunk_chars=chunk_chars,
        bm25=bm25,
        batch_size=batch_size,
        progress=True,
        workers=workers,
    )
    console.print(
        f"built {target}: {manifest.count} passages from {manifest.documents} documents", soft_wrap=True
    )


@index_app.command()
def add(
    sources: list[Path] = typer.Argument(..., help="Files to add; documents already indexed are replaced."),
    index: Path = IndexToUpdate,
    embedder: str | None = EmbedderOption,
    batch_size: int = BatchSizeOption,
) -> None:
    """Add (or replace) the documents of SOURCES in an index."""
    from kotae.indexer.update import add_passages

    _warn_abandoned(index)
    manifest = add_passages(index, sources, _embedder(embedder), batch_size=batch_size, progress=True)
    console.print(
        f"updated {index}: {manifest.count} passages from {manifest.documents} documents", soft_wrap=True
    )


@index_app.command()
def remove(
    ids: list[str] = typer.Argument(..., help="Passage ids, or document ids (removes all their passages)."),
    index: Path = IndexToUpdate,
) -> None:
    """Remove passages or whole documents from an index."""
    from kotae.indexer.update import remove_passages

    manifest = remove_passages(index, ids)
    console.print(
        f"updated {index}: {manifest.count} passages from {manifest.documents} documents", soft_wrap=True
    )


@index_app.command()
def info(directory: Path = typer.Argument(..., help="Index directory.")) -> None:
    """Show what an index holds and how it was built."""
    from kotae.indexer.manifest import read_manifest

    console.print(_info_table(directory, read_manifest(directory)))


def _info_table(directory: Path, manifest: "Manifest") -> Table:
    table = Table(title=str(directory), show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # paths are shown whole, folded over lines
    dense = " ".join(f"{k}={v}" for k, v in manifest.dense.model_dump(exclude={"type"}).items())
    embedder, bm25 = manifest.embedder, manifest.bm25
    rows = {
        "passages": f"{manifest.count} from {manifest.documents} documents (≤ {manifest.chunk_chars} chars)",
        "embedder": f"{embedder.name} (dim {embedder.dimension}, hash {embedder.hash[:12]})",
        "faiss": f"{manifest.dense.type} {dense}".strip(),
        "bm25": (
            f"sudachi mode {bm25.tokenizer.split_mode}, k1={bm25.params.k1} b={bm25.params.b}"
            if bm25
            else "none"
        ),
        "built": f"{manifest.built_at:%Y-%m-%d %H:%M:%S} UTC in {manifest.build_seconds:.1f} s"
        + "".join(f", {stage} {seconds:.1f} s" for stage, seconds in manifest.build_stages.items()),
        "updated": f"{manifest.updated_at:%Y-%m-%d %H:%M:%S} UTC",
        "kotae": manifest.kotae_version,
        "size": f"{sum(p.stat().st_size for p in directory.rglob('*') if p.is_file()) / 2**20:.1f} MiB",
    }
    for name, value in rows.items():
        table.add_row(name, value)
    for source in manifest.sources:
        table.add_row(
            "source", f"{source.path} ({source.format}: {source.documents} docs, {source.passages} passages)"
        )
    return table


def _warn_abandoned(target: Path) -> None:
    from kotae.core.durable import abandoned_stagings

    for staging in abandoned_stagings(target):
        console.print(
            f"[yellow]{staging} is left from an update of {target} that was killed; nothing uses it: "
            f"remove it with rm -rf {staging}[/yellow]",
            soft_wrap=True,
        )


def _build_target(out: Path | None, collection: str | None) -> Path:
    if (out is None) == (collection is None):
        raise KotaeError("give either --out DIRECTORY or --collection NAME")
    if collection is not None:
        return collection_directory(get_settings().collections_root, collection)
    assert out is not None
    return out


def _embedder(name_or_path: str | None) -> "Embedder":
    settings = get_settings()
    with console.status("loading the embedder…"):
        from kotae.indexer.embedder import load_embedder

        # Builds and updates embed passages only: no question graphs to capture.
        return load_embedder(name_or_path or settings.embedder, settings.home, cuda_graphs=False)


def _params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise KotaeError(f"--param {pair!r}: expected KEY=VALUE, e.g. --param M=48")
        params[key.strip()] = value.strip()
    return params
