"""Embedder backends on the tiny random E5: OpenVINO agrees with torch fp32, its conversion is built once,
length-sorted batching keeps the input order, and bad settings fail clearly."""

import logging
import pickle
import threading
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from kotae.core.config import EmbedderBackend, EmbedderPrecision, Settings
from kotae.core.errors import KotaeError
from kotae.indexer import batching, embedding_backends
from kotae.indexer.embedder import Embedder
from kotae.indexer.embedding_backends import BackendUnavailable, resolve

PASSAGES = [
    "富士山\n富士山は静岡県と山梨県にまたがる日本で最も高い山で、標高は3,776メートルである。",
    "琵琶湖\n琵琶湖は滋賀県にある日本最大の湖である。",
    "寿司",
    "新幹線\n新幹線は1964年に開業した高速鉄道である。東京と大阪を結んだ。" * 6,
    "ﾗｰﾒﾝ\nﾗｰﾒﾝは中華麺を使った料理で、ｶﾞｲﾄﾞﾌﾞｯｸにもよく載る。",  # half-width katakana
    "",
    "Mount Fuji is the highest mountain in Japan.",
    "相撲\n相撲は日本の国技とされ、力士の最高位は横綱である。" * 3,
]
QUERIES = ["日本で一番高い山は？", "力士の最高位", "ラーメン"]

openvino = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("converted")


@pytest.fixture(scope="module")
def torch_fp32(tiny_e5: Path) -> Embedder:
    return Embedder(tiny_e5, device="cpu", backend="torch", precision="fp32")


@pytest.fixture(scope="module")
def converted(tiny_e5: Path, cache: Path) -> tuple[dict[str, Embedder], list]:
    """OpenVINO fp32 and bf16 embedders made one after the other, and the conversions that made them."""
    conversions: list = []
    convert = embedding_backends.convert_to_openvino

    def counting(model: object) -> object:
        conversions.append(model)
        return convert(model)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedding_backends, "convert_to_openvino", counting)
        embedders = {
            precision: Embedder(tiny_e5, backend="openvino", precision=precision, cache_dir=cache)
            for precision in ("fp32", "bf16")
        }
    return embedders, conversions


def texts(count: int, seed: int = 0) -> list[str]:
    """Passages of many lengths, shuffled, so that sorting by length reorders them."""
    rng = np.random.default_rng(seed)
    return [PASSAGES[i % len(PASSAGES)] * int(rng.integers(1, 5)) for i in rng.permutation(count)]


def test_torch_path_matches_sentence_transformers_encode(torch_fp32: Embedder) -> None:
    model = torch_fp32._model
    assert model is not None
    for ours, prompt_name, inputs in (
        (torch_fp32.embed_passages(PASSAGES), "passage", PASSAGES),
        (torch_fp32.embed_queries(QUERIES), "query", QUERIES),
    ):
        theirs = model.encode(inputs, prompt_name=prompt_name, normalize_embeddings=True)
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
        assert ours.dtype == np.float32 and ours.flags.c_contiguous


@pytest.mark.parametrize(("precision", "min_cosine"), [("fp32", 0.99999), ("bf16", 0.999)])
def test_openvino_agrees_with_torch_fp32(
    converted: tuple[dict[str, Embedder], list], torch_fp32: Embedder, precision: str, min_cosine: float
) -> None:
    fast = converted[0][precision]
    assert fast.backend == f"openvino-{precision}" and fast.device == "cpu"
    for ours, reference in (
        (fast.embed_passages(PASSAGES), torch_fp32.embed_passages(PASSAGES)),
        (fast.embed_queries(QUERIES), torch_fp32.embed_queries(QUERIES)),
    ):
        assert ours.shape == reference.shape
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert np.min(np.sum(ours * reference, axis=1)) >= min_cosine
    if precision == "fp32":
        np.testing.assert_allclose(
            fast.embed_passages(PASSAGES), torch_fp32.embed_passages(PASSAGES), atol=1e-5
        )


@pytest.mark.slow  # NNCF quantizes the model: tens of seconds on 2 cores
def test_openvino_int8_stays_close_to_fp32(tiny_e5: Path, cache: Path, torch_fp32: Embedder) -> None:
    pytest.importorskip("nncf")
    int8 = Embedder(tiny_e5, backend="openvino", precision="int8", cache_dir=cache)
    cosines = np.sum(int8.embed_passages(PASSAGES) * torch_fp32.embed_passages(PASSAGES), axis=1)
    assert cosines.min() >= 0.99
    assert len(list(cache.glob(".tiny-e5.openvino-int8-*"))) == 1


def test_the_conversion_is_built_once_and_reused(
    converted: tuple[dict[str, Embedder], list], cache: Path
) -> None:
    embedders, conversions = converted
    assert len(conversions) == 1  # bf16 is a compile-time choice: it reuses the fp32 conversion
    folders = [path for path in cache.iterdir() if "int8" not in path.name]  # no temporary folder left
    assert [path.name for path in folders] == [f".tiny-e5.openvino-fp32-r1-{embedders['fp32'].hash[:16]}"]
    assert (folders[0] / embedding_backends.CACHE_MARKER).is_file()


def test_a_failed_conversion_leaves_nothing_and_auto_falls_back_to_torch(
    tiny_e5: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(model: object) -> object:
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(embedding_backends, "convert_to_openvino", broken)
    with pytest.raises(RuntimeError, match="conversion failed"):
        Embedder(tiny_e5, backend="openvino", precision="fp32", cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    with caplog.at_level(logging.WARNING):
        fallback = Embedder(tiny_e5, device="cpu", backend="auto", precision="auto", cache_dir=tmp_path)
    assert fallback.backend == "torch-fp32"
    assert "conversion failed" in caplog.text


def test_loading_embeds_one_query_before_the_first_caller_does(
    tiny_e5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows: list[int] = []
    run_block = embedding_backends.TorchRunner.run_block

    def counting(runner: embedding_backends.TorchRunner, block: batching.Block, features: dict) -> np.ndarray:
        rows.append(len(block.rows))
        return run_block(runner, block, features)

    monkeypatch.setattr(embedding_backends.TorchRunner, "run_block", counting)
    Embedder(tiny_e5, device="cpu", backend="torch", precision="fp32")
    assert rows == [1]


def test_a_compiled_encoder_is_compiled_for_every_batch_size_while_it_loads(
    tiny_e5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's first batch of several questions must not wait for a compilation, with every request
    queued behind it (docs/BENCHMARKS.md, session 30's lease)."""
    import functools

    import torch
    from torch._dynamo.utils import counters

    # Dynamo's graph capture and guards decide what compiles again; its eager backend keeps the test fast.
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    counters.clear()
    compiled = Embedder(tiny_e5, device="cpu", backend="torch", precision="fp32", compiled=True)
    graphs_at_load = counters["stats"]["unique_graphs"]
    assert graphs_at_load > 0
    for questions in (QUERIES, QUERIES[:2], [QUERIES[0]], [text[:60] for text in PASSAGES[:5] if text]):
        compiled.embed_queries(questions)
    assert counters["stats"]["unique_graphs"] == graphs_at_load
    torch._dynamo.reset()


def test_length_sorted_batches_return_vectors_in_input_order(torch_fp32: Embedder) -> None:
    inputs = texts(40)
    one_by_one = np.concatenate([torch_fp32.embed_passages([text]) for text in inputs])
    # A small budget makes many batches, and the rows of each batch are far apart in the input.
    together = torch_fp32.embed_passages(inputs, token_budget=256)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert torch_fp32.embed_passages([]).shape == (0, torch_fp32.dimension)


def test_blocks_cover_the_input_once_and_in_order() -> None:
    inputs = [str(i) * (i % 7 + 1) for i in range(23)]
    tokenize = lambda chunk: [[len(text)] * len(text) for text in chunk]  # noqa: E731
    seen = []
    for block in batching.blocks(inputs, tokenize, 0, token_budget=12, max_rows=3, multiple=4, block_texts=5):
        rows = np.concatenate([batch.rows for batch in block.batches]) + block.start
        np.testing.assert_array_equal(rows, block.rows)
        assert block.start <= rows.min() and rows.max() < block.start + block.count
        for batch in block.batches:
            rows_, length = batch.input_ids.shape
            assert length % 4 == 0 and rows_ <= 3
            assert rows_ * length <= 12 or rows_ == 1
            for row, ids, mask in zip(batch.rows, batch.input_ids, batch.attention_mask, strict=True):
                text = inputs[block.start + row]
                assert mask.sum() == len(text) and (ids[: len(text)] == len(text)).all()
        seen.extend(block.rows.tolist())
    assert sorted(seen) == list(range(len(inputs)))


def test_blocks_raise_what_the_tokenizer_raised_and_stop_its_thread() -> None:
    def tokenize(chunk: list[str]) -> list[list[int]]:
        raise ValueError("bad text")

    before = threading.active_count()
    with pytest.raises(ValueError, match="bad text"):
        list(batching.blocks(["a"] * 10, tokenize, 0, token_budget=8, max_rows=2, multiple=1, block_texts=4))
    assert threading.active_count() == before


def test_plan_batches_respects_the_budget_and_sorts_by_length() -> None:
    lengths = np.asarray([5, 300, 17, 17, 2, 64, 1000, 9])
    batches = batching.plan_batches(lengths, token_budget=128, max_rows=4, multiple=8)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    flat = np.concatenate(batches)
    assert (np.diff(lengths[flat]) >= 0).all()
    for rows in batches:
        padded = batching.round_up(int(lengths[rows].max()), 8)
        assert len(rows) == 1 or len(rows) * padded <= 128


def test_the_tokenizer_shortcut_gives_the_full_tokenizers_ids(torch_fp32: Embedder) -> None:
    from tokenizers import Tokenizer

    shortcut = torch_fp32._tokenizer
    assert shortcut._short is not None  # E5's normalizer starts with half-width katakana rules
    full = Tokenizer.from_str(torch_fp32._model.tokenizer.backend_tokenizer.to_str())
    full.no_padding()
    full.enable_truncation(max_length=torch_fp32._model.max_seq_length)
    inputs = [*PASSAGES, *QUERIES, "ｶﾞｷﾞｸﾞｹﾞｺﾞ ﾊﾟﾋﾟﾌﾟ"]
    assert shortcut(inputs) == [encoding.ids for encoding in full.encode_batch(inputs)]


def test_bad_backend_or_precision_is_a_clear_error(tiny_e5: Path) -> None:
    with pytest.raises(
        KotaeError, match=r"embedder backend 'tensorrt': expected one of auto, torch, openvino"
    ):
        Embedder(tiny_e5, backend="tensorrt", precision="auto")
    with pytest.raises(KotaeError, match=r"precision 'int8' is not offered by backend 'torch'"):
        Embedder(tiny_e5, backend="torch", precision="int8")
    with pytest.raises(KotaeError, match=r"embedder precision 'fp8'"):
        resolve("auto", "fp8", "cpu")
    with pytest.raises(BackendUnavailable, match="openvino runs on the CPU"):
        resolve("openvino", "auto", "cuda")
    with pytest.raises(ValidationError, match="embedder_backend"):
        Settings(embedder_backend="tensorrt")  # type: ignore[arg-type]


def test_auto_is_openvino_on_a_cpu_and_fp16_torch_on_cuda() -> None:
    cpu = resolve("auto", "auto", "cpu")
    assert cpu.backend == "openvino"
    if embedding_backends.cpu_has_int8_dot_products():
        assert cpu.precision == "int8"
    else:
        assert cpu.precision == ("bf16" if embedding_backends.cpu_has_native_bf16() else "fp32")
    assert resolve("auto", "auto", "cuda").label == "torch-fp16"
    assert resolve("torch", "auto", "cpu").label == "torch-fp32"
    assert resolve("openvino", "int8", None).device == "cpu"


def test_the_settings_offer_what_the_backends_know() -> None:
    assert get_args(EmbedderBackend) == embedding_backends.BACKENDS
    assert get_args(EmbedderPrecision) == embedding_backends.PRECISIONS
    assert Settings().embedder_backend == "auto"


def test_token_ids_from_another_process_embed_as_the_texts_do(torch_fp32: Embedder) -> None:
    tokenizer = pickle.loads(pickle.dumps(torch_fp32.passage_tokenizer()))  # as a worker receives it
    token_ids = tokenizer(PASSAGES)
    prompt = torch_fp32.passage_prompt or ""
    assert [row.tolist() for row in (token_ids[i] for i in range(len(PASSAGES)))] == torch_fp32._tokenize(
        [prompt + text for text in PASSAGES]
    )
    np.testing.assert_array_equal(
        torch_fp32.embed_passages(PASSAGES, token_ids=token_ids), torch_fp32.embed_passages(PASSAGES)
    )
    with pytest.raises(ValueError, match="7 token id rows for 8 texts"):
        torch_fp32.embed_passages(PASSAGES, token_ids=tokenizer(PASSAGES[:7]))


def test_compilation_is_a_torch_choice() -> None:
    assert resolve("torch", "fp16", "cuda", compiled=True).label == "torch-fp16-compiled"
    assert resolve("openvino", "fp32", "cpu", compiled=True).label == "openvino-fp32"
    assert not Settings().embedder_compile
