"""BM25 words: Sudachi mode C, normalized forms, no punctuation; safe across threads."""

from concurrent.futures import ThreadPoolExecutor

from kotae.indexer.tokenizer import SudachiTokenizer, TokenizerSettings


def test_mode_c_keeps_compounds_whole() -> None:
    assert "外国人参政権" in SudachiTokenizer().tokenize("外国人参政権について議論する。")


def test_punctuation_and_spaces_are_dropped_and_forms_normalized() -> None:
    words = SudachiTokenizer().tokenize("「ＡＢＣ」、　東京。")
    assert words == ["abc", "東京"]


def test_particles_and_auxiliary_verbs_are_dropped() -> None:
    assert SudachiTokenizer().tokenize("東京に行きました") == ["東京", "行く"]


def test_mode_a_splits_compounds() -> None:
    words = SudachiTokenizer(TokenizerSettings(split_mode="A")).tokenize("外国人参政権")
    assert "外国人参政権" not in words and len(words) > 1


def test_long_text_is_fed_to_sudachi_in_pieces() -> None:
    assert len(SudachiTokenizer().tokenize("東京。" * 20_000)) == 20_000


def test_threads_get_their_own_tokenizer() -> None:
    tokenizer = SudachiTokenizer()
    texts = ["外国人参政権の議論が続いている。", "新幹線は1964年に開業した。"] * 50
    expected = [tokenizer.tokenize(text) for text in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(tokenizer.tokenize, texts)) == expected


def test_a_batch_is_tokenized_in_order_across_threads() -> None:
    tokenizer = SudachiTokenizer()
    texts = [f"東京タワーは{year}年に完成した。" for year in range(1900, 2000)]
    assert tokenizer.tokenize_many(texts) == [tokenizer.tokenize(text) for text in texts]
    assert tokenizer.tokenize_many(texts[:3]) == [tokenizer.tokenize(text) for text in texts[:3]]
    assert tokenizer.tokenize_many([]) == []
