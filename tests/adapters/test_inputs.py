"""Bad training input stops with the file and line; examples and metadata are checked before use."""

import json

import pytest

from kotae.adapters.atomic import atomic_dir, check_target
from kotae.adapters.metadata import read_metadata
from kotae.adapters.rows import ExampleRow, read_rows
from kotae.adapters.sft_examples import info_path, read_examples
from kotae.core.errors import InputError, KotaeError
from kotae.core.qa_jsonl import read_qa_jsonl


def test_malformed_row_names_file_and_line(tmp_path):
    path = tmp_path / "qa.jsonl"
    good = {"qid": "1", "question": "日本一高い山は？", "answers": ["富士山"], "gold_passage_ids": ["p1"]}
    path.write_text(
        json.dumps(good, ensure_ascii=False) + "\n\n" + '{"question": "途中で切れた', encoding="utf-8"
    )
    with pytest.raises(InputError) as error:
        list(read_qa_jsonl(path))
    assert str(error.value).startswith(f"{path}:3: not valid JSON")


def test_example_with_an_empty_completion_names_the_field(tmp_path):
    path = tmp_path / "examples.jsonl"
    path.write_text(
        '{"prompt": "何？", "completion": "", "question": "何？", "answers": []}\n', encoding="utf-8"
    )
    with pytest.raises(
        InputError, match=r"examples.jsonl:1: completion: String should have at least 1 character"
    ):
        list(read_rows(path, ExampleRow))


def test_non_utf8_line_and_missing_file_are_input_errors(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_bytes(b'{"question": "\xff"}\n')
    with pytest.raises(InputError, match=r"qa.jsonl:1: not UTF-8"):
        list(read_qa_jsonl(path))
    with pytest.raises(InputError, match="no such file"):
        list(read_rows(tmp_path / "absent.jsonl", ExampleRow))


def test_examples_built_for_another_template_are_refused(tmp_path, examples_file):
    copy = tmp_path / "examples.jsonl"
    copy.write_bytes(examples_file.read_bytes())
    info = json.loads(info_path(examples_file).read_text())
    info_path(copy).write_text(json.dumps({**info, "prompt_version": "old-template"}))
    with pytest.raises(InputError, match="old-template"):
        read_examples(copy)
    assert len(read_examples(examples_file).rows) == 6
    assert all(isinstance(row, ExampleRow) for row in read_examples(examples_file).rows)


def test_adapter_folder_without_metadata_is_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(InputError, match=r"adapter_model\.safetensors: missing"):
        read_metadata(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(InputError, match=r"kotae_adapter\.json: missing"):
        read_metadata(tmp_path)
    (tmp_path / "kotae_adapter.json").write_text('{"kind": "dpo"}')
    with pytest.raises(InputError, match="invalid adapter metadata"):
        read_metadata(tmp_path)


def test_outputs_appear_whole_or_not_at_all(tmp_path):
    target = tmp_path / "adapter"
    with pytest.raises(RuntimeError), atomic_dir(target) as staging:
        (staging / "half.bin").write_bytes(b"x")
        raise RuntimeError("crash while saving")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(target) as staging:
        (staging / "v1").write_text("1")
    with pytest.raises(KotaeError, match="already exists"):
        check_target(target, overwrite=False)
    with atomic_dir(target, overwrite=True) as staging:
        (staging / "v2").write_text("2")
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    assert [p.name for p in target.iterdir()] == ["v2"]
