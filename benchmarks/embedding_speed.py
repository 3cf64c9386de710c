"""Embedding speed and dense retrieval quality of each embedder backend, side by side.

    python benchmarks/embedding_speed.py --out /tmp/embedding-speed.json            # every passage
    python benchmarks/embedding_speed.py --out /tmp/es.json --limit 2000 --rounds 2   # a quicker look
    python benchmarks/embedding_speed.py --out /tmp/es-gpu.json --device cuda          # torch fp32/bf16/fp16

For each variant (backend and precision) it embeds the passages of jawiki-paragraphs, chunked as the indexer
chunks them (400 characters, `title\\ntext`), and the questions of JSQuAD's dev split, then reports:
passages per second over that whole pass; dense recall@5 over an exact inner-product search (a question
is answered when one of its top 5 passages was cut from its gold paragraph); the cosine of each passage
vector to the torch fp32 one; and recall@5 with the passages of the variant and the questions of torch
fp32 (are indexes built by one backend searchable with another's queries?).

On a shared machine, absolute speeds move with the load: the speed stage also embeds one sample of
passages with every variant in turn, round after round, and reports each variant's speed relative to torch
fp32 within the same round (median over rounds). `st-torch-fp32` is sentence-transformers' own `encode`
(batches of 32 texts), as kotae embedded before batching by token budget.

With `--limit N`, the passages are those of the questions' gold paragraphs plus others in corpus order, N in
all. Vectors are cached under --cache (keyed by variant, texts and weights), so a rerun only re-times the
sample rounds; the first-use conversion of each variant is timed once (`setup_seconds`).
"""

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from kotae.indexer.chunking import chunk_document, indexed_text
from kotae.indexer.embedder import Embedder, load_embedder
from kotae.indexer.sources import read_documents

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CORPUS = DATA / "jawiki-paragraphs.jsonl"
QUESTIONS = DATA / "qa" / "jsquad-valid-dev.jsonl"
REFERENCE = "torch-fp32"
LEGACY = "st-torch-fp32"
VARIANTS = (
    LEGACY,
    REFERENCE,
    "torch-bf16",
    "torch-fp16",
    "torch-fp16-compiled",
    "openvino-fp32",
    "openvino-bf16",
    "openvino-int8",
)
CPU_DEFAULTS = (
    [v for v in VARIANTS if not v.startswith("torch-fp16")],
    [REFERENCE, "openvino-fp32", "openvino-bf16", "openvino-int8"],
)
CUDA_DEFAULTS = (
    [LEGACY, REFERENCE, "torch-bf16", "torch-fp16", "torch-fp16-compiled"],
    [REFERENCE, "torch-fp16", "torch-fp16-compiled"],
)
RECALL_AT = 5


@dataclass(frozen=True)
class Data:
    texts: list[str]
    """Passages as embedded: title, newline, text."""
    documents: np.ndarray
    """The paragraph (document) each passage was cut from, as an index into `document_ids`."""
    document_ids: list[str]
    questions: list[str]
    gold: list[set[int]]
    """Per question, its gold paragraphs as indexes into `document_ids`."""


def main() -> None:
    args = _arguments()
    data = load_data(args.limit)
    print(f"{len(data.texts)} passages, {len(data.questions)} questions", flush=True)
    embedders = {name: make_embedder(name, args) for name in args.variants if name != LEGACY}
    report: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": _machine(),
        "passages": len(data.texts),
        "questions": len(data.questions),
        "variants": {},
    }
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name in args.recall_variants:
        embedder = embedders[name]
        vectors[name], report["variants"][name] = embed_all(name, embedder, data, args.cache)
        report["variants"][name]["setup_seconds"] = embedder.setup_seconds  # type: ignore[attr-defined]
        print(f"{name}: {report['variants'][name]}", flush=True)
    if REFERENCE in vectors:
        reference_passages, reference_queries = vectors[REFERENCE]
        for name, (passages, queries) in vectors.items():
            cosines = np.sum(passages * reference_passages, axis=1)
            query_cosines = np.sum(queries * reference_queries, axis=1)
            report["variants"][name] |= {
                "passage_cosine_to_fp32": {"min": _round(cosines.min()), "mean": _round(cosines.mean())},
                "query_cosine_to_fp32": {
                    "min": _round(query_cosines.min()),
                    "mean": _round(query_cosines.mean()),
                },
                f"recall@{RECALL_AT}_with_fp32_queries": recall(passages, reference_queries, data),
            }
    if args.rounds:
        report["sample_rounds"] = sample_rounds(embedders, data, args)
    if args.throughput:
        report["throughput"] = throughput(embedders, data, args.throughput)
        print(json.dumps(report["throughput"], indent=2), flush=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(markdown(report))


def load_data(limit: int | None) -> Data:
    rows = [json.loads(line) for line in QUESTIONS.open(encoding="utf-8")]
    gold_ids = {gold for row in rows for gold in row["gold_passage_ids"]}
    texts, owners = [], []
    gold_texts, gold_owners = [], []
    for document in read_documents(CORPUS):
        for passage in chunk_document(document):
            if document.id in gold_ids:
                gold_texts.append(indexed_text(passage))
                gold_owners.append(document.id)
            else:
                texts.append(indexed_text(passage))
                owners.append(document.id)
    if limit is not None:
        if limit < len(gold_texts):
            raise SystemExit(f"--limit {limit}: the questions' gold paragraphs alone make {len(gold_texts)}")
        texts, owners = texts[: limit - len(gold_texts)], owners[: limit - len(gold_texts)]
    texts, owners = gold_texts + texts, gold_owners + owners
    document_ids = sorted(set(owners))
    number = {document: i for i, document in enumerate(document_ids)}
    return Data(
        texts=texts,
        documents=np.asarray([number[owner] for owner in owners]),
        document_ids=document_ids,
        questions=[row["question"] for row in rows],
        gold=[{number[g] for g in row["gold_passage_ids"] if g in number} for row in rows],
    )


def make_embedder(name: str, args: argparse.Namespace) -> Embedder:
    backend, precision, *compiled = name.split("-")
    started = time.perf_counter()
    embedder = load_embedder(
        args.embedder,
        args.home,
        device=args.device,
        backend=backend,
        precision=precision,
        compiled=bool(compiled),
    )
    embedder.setup_seconds = round(time.perf_counter() - started, 1)  # type: ignore[attr-defined]
    return embedder


def embed_all(
    name: str, embedder: Embedder, data: Data, cache: Path
) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
    """Every passage and question, timed (or read back from the cache with the time it took)."""
    digest = hashlib.sha256("\x1e".join([*data.texts, "\x1d", *data.questions]).encode()).hexdigest()
    key = f"{name}-{embedder.hash[:12]}-{digest[:12]}"
    cache.mkdir(parents=True, exist_ok=True)
    path, meta_path = cache / f"{key}.npz", cache / f"{key}.json"
    if not path.exists():
        load = os.getloadavg()[0]
        started = time.perf_counter()
        passages = embedder.embed_passages(data.texts)
        seconds = time.perf_counter() - started
        queries = embedder.embed_queries(data.questions)
        meta = {
            "passages_per_second": round(len(data.texts) / seconds, 1),
            "seconds": round(seconds, 1),
            "load_average_before": round(load, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
        }
        np.savez(path, passages=passages, queries=queries)
        meta_path.write_text(json.dumps(meta, indent=2))
    saved = np.load(path)
    passages, queries = saved["passages"], saved["queries"]
    meta = json.loads(meta_path.read_text())
    return (passages, queries), meta | {f"recall@{RECALL_AT}": recall(passages, queries, data)}


def recall(passages: np.ndarray, queries: np.ndarray, data: Data) -> float:
    """Share of questions with a gold paragraph among the paragraphs of their top passages (exact search)."""
    import faiss

    _, top = faiss.knn(queries, passages, RECALL_AT, metric=faiss.METRIC_INNER_PRODUCT)
    hits = [bool(set(data.documents[row].tolist()) & gold) for row, gold in zip(top, data.gold, strict=True)]
    return round(sum(hits) / len(hits), 4)


def sample_rounds(embedders: dict[str, Embedder], data: Data, args: argparse.Namespace) -> dict:
    """Every variant embeds the same sample in turn, `rounds` times: speeds, and ratios to torch fp32
    within each round (so that a load that comes and goes affects both sides of a ratio alike)."""
    rng = np.random.default_rng(0)
    sample = [
        data.texts[i] for i in rng.choice(len(data.texts), min(args.sample, len(data.texts)), replace=False)
    ]
    legacy = embedders.get(REFERENCE)
    runs: dict[str, list[float]] = {name: [] for name in args.variants}
    for embedder in embedders.values():  # warm-up: the first batches of a shape compile kernels
        embedder.embed_passages(sample[:64])
    for round_number in range(args.rounds):
        for name in args.variants:
            started = time.perf_counter()
            if name == LEGACY:
                assert legacy is not None and legacy._model is not None, f"{LEGACY} needs {REFERENCE}"
                legacy._model.encode(
                    sample, prompt_name=legacy.passage_prompt_name, batch_size=32, normalize_embeddings=True
                )
            else:
                embedders[name].embed_passages(sample)
            runs[name].append(len(sample) / (time.perf_counter() - started))
        print(
            f"round {round_number + 1}: " + ", ".join(f"{n} {r[-1]:.1f}/s" for n, r in runs.items()),
            flush=True,
        )
    result: dict = {"sample": len(sample), "rounds": args.rounds, "variants": {}}
    for name, speeds in runs.items():
        entry = {
            "passages_per_second": [round(s, 1) for s in speeds],
            "median": round(statistics.median(speeds), 1),
        }
        if REFERENCE in runs:
            ratios = [s / r for s, r in zip(speeds, runs[REFERENCE], strict=True)]
            entry["median_ratio_to_torch_fp32"] = round(statistics.median(ratios), 2)
        result["variants"][name] = entry
    return result


def throughput(embedders: dict[str, Embedder], data: Data, count: int) -> dict:
    """Each variant, warm, on `count` passages (the corpus repeated, in corpus order): passages per second
    over one long pass, tokenizing as it goes, and given token ids made beforehand, as an index build's
    worker processes make them; and how fast tokenizing alone goes in one process. torch fp32 is left out
    where other variants run."""
    texts = [data.texts[i % len(data.texts)] for i in range(count)]
    tokenizer = next(iter(embedders.values())).passage_tokenizer()
    started = time.perf_counter()
    token_ids = tokenizer(texts)
    result: dict = {
        "passages": count,
        "tokenize_per_second": round(count / (time.perf_counter() - started), 1),
        "mean_tokens": round(len(token_ids.flat) / count, 1),
        "variants": {},
    }
    for name, embedder in embedders.items():
        if name == REFERENCE and len(embedders) > 1:
            continue  # there for cosines and recall; its speed is the whole pass's
        embedder.embed_passages(texts[:20_000])  # warm: kernels of every shape, compiled graphs
        rates = {}
        for label, ids in (("texts", None), ("token_ids", token_ids)):
            started = time.perf_counter()
            embedder.embed_passages(texts, token_ids=ids)
            rates[label] = round(count / (time.perf_counter() - started), 1)
        result["variants"][name] = {
            "passages_per_second": rates["texts"],
            "passages_per_second_pretokenized": rates["token_ids"],
        }
    return result


def markdown(report: dict) -> str:
    rounds = report.get("sample_rounds", {}).get("variants", {})
    lines = [
        f"{report['passages']} passages, {report['questions']} questions; `{report['command']}`",
        "",
        f"| variant | passages/s (all) | recall@{RECALL_AT} | with fp32 queries | min cos to fp32 | "
        "sample passages/s (median) | × torch fp32 (same round) | setup s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in [*report["variants"], *(n for n in rounds if n not in report["variants"])]:
        v, r = report["variants"].get(name, {}), rounds.get(name, {})
        cosine = v.get("passage_cosine_to_fp32", {}).get("min", "")
        lines.append(
            f"| {name} | {v.get('passages_per_second', '')} | {v.get(f'recall@{RECALL_AT}', '')} | "
            f"{v.get(f'recall@{RECALL_AT}_with_fp32_queries', '')} | {cosine} | {r.get('median', '')} | "
            f"{r.get('median_ratio_to_torch_fp32', '')} | {v.get('setup_seconds', '')} |"
        )
    return "\n".join(lines) + "\n"


def _round(value: float) -> float:
    return round(float(value), 5)


def _machine() -> dict:
    return {
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="Where the JSON report goes.")
    parser.add_argument("--limit", type=int, default=None, help="Passages embedded (default: all).")
    parser.add_argument("--embedder", default="multilingual-e5-small", help="Store name or folder.")
    parser.add_argument("--home", type=Path, help="kotae home holding the model store (default: settings).")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (torch variants only).")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        help="Variants in the sample rounds (default: all that run on the device).",
    )
    parser.add_argument(
        "--recall-variants",
        nargs="+",
        choices=[v for v in VARIANTS if v != LEGACY],
        help="Variants that embed every passage and question (speed over the whole pass, recall); "
        "default: torch fp32 and the OpenVINO ones on a CPU, torch fp32 and fp16 on CUDA.",
    )
    parser.add_argument("--sample", type=int, default=384, help="Passages per variant in each sample round.")
    parser.add_argument("--rounds", type=int, default=3, help="Sample rounds (0: none).")
    parser.add_argument(
        "--throughput",
        type=int,
        default=0,
        help="Passages (the corpus repeated) each variant embeds warm in one pass, timed (0: none).",
    )
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "kotae-embedding-speed")
    args = parser.parse_args()
    defaults = CUDA_DEFAULTS if args.device.startswith("cuda") else CPU_DEFAULTS
    args.variants = args.variants or defaults[0]
    args.recall_variants = args.recall_variants or defaults[1]
    if args.home is None:
        from kotae.core.config import Settings

        args.home = Settings().home
    args.variants = [v for v in VARIANTS if v in args.variants or v in args.recall_variants]
    if LEGACY in args.variants and REFERENCE not in args.variants:
        args.variants.insert(1, REFERENCE)
    return args


if __name__ == "__main__":
    main()
