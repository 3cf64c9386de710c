"""Six passages and four questions on them, for the eval tests that build a real index."""

PASSAGES = [
    ("p1", "富士山", "富士山は標高3776メートルで、日本で最も高い山である。"),
    ("p2", "琵琶湖", "琵琶湖は滋賀県にある日本最大の湖である。"),
    ("p3", "利根川", "利根川は関東地方を流れる川で、流域面積は日本最大である。"),
    ("p4", "屋久島", "屋久島は鹿児島県の島で、縄文杉が知られている。"),
    ("p5", "札幌", "札幌は北海道の道庁所在地で、雪まつりが開かれる。"),
    ("p6", "奈良", "奈良には東大寺があり、大仏が安置されている。"),
]
"""(id, title, text)."""
QUESTIONS = [
    ("q1", "日本で最も高い山は？", ["富士山"], "p1"),
    ("q2", "日本最大の湖はどこにある？", ["滋賀県"], "p2"),
    ("q3", "縄文杉が知られている島は？", ["屋久島"], "p4"),
    ("q4", "東大寺があるのはどこ？", ["奈良"], "p6"),
]
"""(qid, question, answers, gold passage id)."""


def corpus_rows() -> list[dict[str, str]]:
    """`PASSAGES` as the rows of a corpus JSONL file."""
    return [{"id": pid, "title": title, "text": text} for pid, title, text in PASSAGES]
