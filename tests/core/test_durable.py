"""Durable folders: a staged one replaces the old only when complete, with or without renameat2; one built
once is kept; a text file's bytes depend only on its text."""

import time
from pathlib import Path

import pytest

from kotae.core import durable
from kotae.core.jsonl import open_binary


def make(target: Path, content: str) -> None:
    with durable.staged_directory(target) as staging:
        (staging / "data.txt").write_text(content)


def leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.is_dir() and p != target)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_replaces_the_target_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    if not exchange:
        monkeypatch.setattr(durable, "_exchange", lambda first, second: False)
    target = tmp_path / "index"
    make(target, "one")
    make(target, "two")
    assert (target / "data.txt").read_text() == "two"
    assert leftovers(target) == []
    assert (target.stat().st_mode & 0o777) == 0o755


def test_a_failure_inside_keeps_the_target(tmp_path: Path) -> None:
    target = tmp_path / "index"
    make(target, "one")
    with pytest.raises(ValueError, match="halfway"), durable.staged_directory(target) as staging:
        (staging / "data.txt").write_text("two")
        raise ValueError("halfway")
    assert (target / "data.txt").read_text() == "one"
    assert leftovers(target) == []


def test_build_once_builds_a_missing_target_and_keeps_a_complete_one(tmp_path: Path) -> None:
    target = tmp_path / "model"
    built: list[str] = []

    def build(staging: Path) -> None:
        built.append(staging.name)
        (staging / "marker").write_text(str(len(built)))

    def complete(folder: Path) -> bool:
        return (folder / "marker").is_file()

    assert durable.build_once(target, complete, build) == target
    assert durable.build_once(target, complete, build) == target
    assert len(built) == 1 and (target / "marker").read_text() == "1"
    assert (target / "marker").stat().st_mode & 0o777 == 0o644
    assert leftovers(target) == []


def test_build_once_replaces_an_incomplete_target_and_cleans_up_a_failed_build(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "half").write_text("left by hand")

    def broken(staging: Path) -> None:
        (staging / "marker").write_text("")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        durable.build_once(target, lambda folder: (folder / "marker").is_file(), broken)
    assert leftovers(target) == [] and (target / "half").is_file()
    durable.build_once(target, lambda folder: (folder / "marker").is_file(), lambda s: (s / "marker").touch())
    assert sorted(p.name for p in target.iterdir()) == ["marker"]


@pytest.mark.parametrize("name", ["examples.jsonl", "examples.jsonl.gz"])
def test_atomic_text_writes_the_same_bytes_for_the_same_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    def write(folder: str) -> bytes:
        target = tmp_path / folder / name
        with durable.atomic_text(target) as stream:
            stream.write("日本語の例\n" * 3)
        assert [p.name for p in target.parent.iterdir()] == [name]
        return target.read_bytes()

    first = write("one")
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # gzip would otherwise stamp the hour
    second = write("two")
    assert first == second
    with open_binary(tmp_path / "two" / name) as stream:
        assert stream.read().decode() == "日本語の例\n" * 3
