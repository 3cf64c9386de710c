"""Instruction JSONL: Alpaca-style records in, a bad record stops the read with its file and line."""

from pathlib import Path

import pytest

from kotae.core.errors import InputError
from kotae.core.instruction_jsonl import InstructionItem, read_instruction_jsonl

ALPACA = Path(__file__).parents[1] / "adapters" / "data" / "alpaca-ja.jsonl"


def test_records_with_and_without_input_are_read():
    items = dict(read_instruction_jsonl(ALPACA))
    assert len(items) == 6
    assert items[1] == InstructionItem(
        "次の文を丁寧な言い方に書き換えてください。", "明日また来る。", "明日また参ります。"
    )
    assert items[2].input == ""


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"input": "x", "output": "y"}', "`instruction` must be a non-empty string"),
        ('{"instruction": " ", "output": "y"}', "`instruction` must be a non-empty string"),
        ('{"instruction": "訳して", "input": 3, "output": "y"}', "`input` must be a string"),
        ('{"instruction": "訳して", "input": "x"}', "`output` must be a non-empty string"),
        ('["instruction", "output"]', "expected a JSON object per line"),
    ],
)
def test_a_bad_record_names_file_line_and_reason(tmp_path, line, reason):
    path = tmp_path / "alpaca.jsonl"
    path.write_text('{"instruction": "挨拶して", "output": "こんにちは"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError) as error:
        list(read_instruction_jsonl(path))
    assert str(error.value) == f"{path}:3: {reason}"
