import json

import pytest
from jsonl_files import write_jsonl

from kotae.core.errors import InputError
from kotae.core.passage import Passage
from kotae.evals.datasets import load_dataset


def squad(articles):
    return {"version": "test", "data": articles}


def test_kotae_qa_jsonl(tmp_path):
    path = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {
                "qid": "q1",
                "question": "猫の町の名前は？",
                "answers": ["ねこまち", "ねこまち"],
                "gold_passage_ids": ["p1"],
            },
            {"qid": "q2", "question": " 川の長さは？ ", "answers": ["12キロ"]},
        ],
    )
    first, second = load_dataset(path)
    assert (first.qid, first.answers, first.gold_passage_ids, first.contexts) == (
        "q1",
        ("ねこまち",),
        ("p1",),
        None,
    )
    assert (second.question, second.gold_passage_ids) == ("川の長さは？", ())


def test_kotae_qa_jsonl_with_contexts_and_a_limit(tmp_path):
    path = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {
                "qid": f"q{i}",
                "question": "橋の色は？",
                "answers": ["赤"],
                "contexts": [{"id": "c1", "title": "橋", "text": "その橋は赤い。"}, "題のない文。"],
            }
            for i in range(5)
        ],
    )
    items = load_dataset(path, limit=2)
    assert [item.qid for item in items] == ["q0", "q1"]
    assert items[0].contexts == (
        Passage("c1", "橋", "その橋は赤い。"),
        Passage("q0#ctx1", "", "題のない文。"),
    )


def test_unanswerable_questions_have_no_answers(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"qid": "q1", "question": "橋の色は？", "answers": ["赤"], "gold_passage_ids": ["p1"]},
            {"qid": "q1:noans", "question": "橋の色は？", "answers": [], "answerable": False,
             "gold_passage_ids": ["p1"]},
            {"qid": "q2", "question": "塔の高さは？", "answerable": False},
        ],
    )  # fmt: skip
    answerable, twin, bare = load_dataset(path)
    assert answerable.answerable and answerable.answers == ("赤",)
    assert (twin.answerable, twin.answers, twin.gold_passage_ids) == (False, (), ("p1",))
    assert (bare.answerable, bare.answers) == (False, ())


def test_aio_style_jsonl_gives_ctxs_as_contexts(tmp_path):
    path = write_jsonl(
        tmp_path / "aio.jsonl",
        [
            {
                "qid": "aio-1",
                "question": "山の上にある湖の名前は？",
                "answers": ["天池"],
                "ctxs": [
                    {"id": "7", "title": "天池", "text": "山頂の湖。", "score": 3.2, "has_answer": True},
                    {"title": "山", "text": "高い山。"},
                ],
            }
        ],
    )
    (item,) = load_dataset(path)
    assert item.contexts == (Passage("7", "天池", "山頂の湖。"), Passage("aio-1#ctx1", "山", "高い山。"))
    assert item.gold_passage_ids == ()


def test_jsquad_style_json_splits_title_from_context(tmp_path):
    path = tmp_path / "valid.json"
    qas = [
        {
            "id": "x1q0",
            "question": "灯台はいつ建った？",
            "answers": [{"text": "1900年", "answer_start": 0}] * 2,
        },
        {"id": "x1q1", "question": "誰も知らない？", "answers": [], "is_impossible": True},
    ]
    article = {
        "title": "灯台",
        "paragraphs": [{"context": "港の灯台 [SEP] 1900年に建った灯台。", "qas": qas}],
    }
    path.write_text(json.dumps(squad([article]), ensure_ascii=False), encoding="utf-8")
    (item,) = load_dataset(path)  # the unanswerable question is skipped
    assert (item.qid, item.answers) == ("x1q0", ("1900年",))
    assert item.contexts == (Passage("valid:0:0", "港の灯台", "1900年に建った灯台。"),)


def test_squad_directory_reads_every_file_in_order(tmp_path):
    for number, title in enumerate(["甲", "乙"]):
        paragraph = {
            "context": f"{title}の段落。",
            "qas": [{"id": f"{title}-q", "question": "何？", "answers": [{"text": title}]}],
        }
        (tmp_path / f"part_{number}.json").write_text(
            json.dumps(squad([{"title": title, "paragraphs": [paragraph]}]), ensure_ascii=False),
            encoding="utf-8",
        )
    items = load_dataset(tmp_path)
    assert [item.qid for item in items] == ["甲-q", "乙-q"]
    assert items[1].contexts == (Passage("part_1:0:0", "乙", "乙の段落。"),)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"qid": "b", "answers": ["a"]}', "`question`"),
        ('{"qid": "b", "question": "何？", "answers": []}', "`answers`"),
        ('{"qid": "b", "question": "何？", "answers": ["", "x"]}', "non-empty string"),
        ('{"qid": "b", "question": "何？", "answers": ["x"], "gold_passage_ids": "p1"}', "gold_passage_ids"),
        ('{"qid": "b", "question": "何？", "answers": ["x"], "ctxs": [{"title": "t"}]}', "context 0"),
        ('{"qid": "b", "question": "何？", "answers": ["x"], "answerable": false}', "must have no `answers`"),
        ('{"qid": "b", "question": "何？", "answers": [], "answerable": "no"}', "`answerable` must be"),
        ('{"qid": "a", "question": "何？", "answers": ["x"]}', "appears twice"),
    ],
)
def test_malformed_jsonl_rows_name_file_and_line(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"qid": "a", "question": "何？", "answers": ["x"]}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=reason) as caught:
        load_dataset(path)
    assert caught.value.path == path
    if "twice" not in reason:
        assert caught.value.line == 3


def test_malformed_squad_names_the_place_in_the_tree(tmp_path):
    path = tmp_path / "bad.json"
    qa = {"id": "q", "question": "何？", "answers": [{"answer_start": 0}]}
    path.write_text(json.dumps(squad([{"title": "t", "paragraphs": [{"context": "文。", "qas": [qa]}]}])))
    with pytest.raises(InputError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]"):
        load_dataset(path)


def test_missing_and_empty_inputs_are_refused(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tmp_path / "absent.jsonl")
    with pytest.raises(InputError, match="no questions"):
        load_dataset(write_jsonl(tmp_path / "empty.jsonl", []))
    with pytest.raises(InputError, match="SQuAD-style"):
        load_dataset(tmp_path)  # a directory without *.json
