import random

from kotae.rag.loop_guard import LoopGuard, cut_repetition


def test_cut_repetition_cuts_loops_and_leaves_normal_text():
    assert cut_repetition("東京都、東京都、東京都、東京都、東") == "東京都、"
    assert cut_repetition("答えは1990年です。" * 3) == "答えは1990年です。"
    assert cut_repetition("それはそれは見事な桜です。") == "それはそれは見事な桜です。"
    assert cut_repetition("1111年") == "1111年"


def test_guard_stops_at_the_first_character_where_cut_repetition_would_cut():
    texts = ["東京都、" * 4, "答えは1990年です。" * 3, "それはそれは見事な桜です。", "1111年", "あ" * 20]
    rng = random.Random(0)
    # Short texts over a few letters hold loops of every period, rotation and partial copy.
    texts += ["".join(rng.choice("abc") for _ in range(rng.randint(1, 60))) for _ in range(3000)]
    texts += [rng.choice(["ab", "abc", "東京都、", "x" * 9]) * rng.randint(1, 6) + "yz" for _ in range(200)]
    for text in texts:
        guard = LoopGuard()
        guard.feed(text)
        cuts = (end for end in range(1, len(text) + 1) if cut_repetition(text[:end]) != text[:end])
        looping_at = next(cuts, None)
        assert guard.looping == (looping_at is not None), text
        assert guard.text == (text if looping_at is None else text[: looping_at - 1]), text


def test_what_goes_out_does_not_depend_on_how_the_text_is_chunked():
    text = "富士山の高さは3776メートルです。" + "東京都、" * 5 + "以上"
    whole = LoopGuard()
    whole.feed(text)
    rng = random.Random(1)
    for _ in range(50):
        guard, sent, end = LoopGuard(), "", 0
        while end < len(text) and not guard.looping:
            end = min(len(text), end + rng.randint(1, 12))
            sent += guard.feed(text[:end])
        assert (sent, guard.text, guard.looping) == (whole.text, whole.text, True)
    assert whole.text == "富士山の高さは3776メートルです。東京都、東京都、東京都"


def test_guard_lets_normal_text_through_as_it_comes():
    guard = LoopGuard()
    assert guard.feed("東京") == "東京"
    assert guard.feed("東京都です") == "都です"
    assert not guard.looping
