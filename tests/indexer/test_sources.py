"""Input formats: passage JSONL, wikitext JSONL (gzip), MediaWiki XML (plain, bz2); malformed input."""

import bz2
import gzip
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from indexer_fixtures import CORPUS, DATA, FIXTURES
from jsonl_files import write_jsonl

from kotae.core.errors import InputError
from kotae.indexer.sources import detect_format, read_documents

XML = FIXTURES / "sample-pages.xml"


def test_passage_jsonl(corpus: Path) -> None:
    assert detect_format(corpus) == "passages"
    documents = list(read_documents(corpus))
    assert [d.id for d in documents] == [row["id"] for row in CORPUS]
    assert documents[0].title == "みかん島"
    assert documents[0].sections == (CORPUS[0]["text"],)
    assert documents[0].origin == f"{corpus}:1"


def test_integer_ids_become_strings(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "ids.jsonl", [{"id": 7, "title": "t", "text": "本文。"}])
    assert [d.id for d in read_documents(path)] == ["7"]


def test_wikitext_jsonl_gzip(tmp_path: Path) -> None:
    path = tmp_path / "wiki.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write(
            json.dumps({"title": "くるみ山", "text": "'''くるみ山'''は[[山]]である。{{要出典}}"}) + "\n"
        )
    assert detect_format(path) == "wikitext"
    [document] = read_documents(path)
    assert (document.id, document.title, document.sections) == (
        "くるみ山",
        "くるみ山",
        ("くるみ山は山である。",),
    )


def test_mediawiki_xml_skips_redirects_and_other_namespaces() -> None:
    assert detect_format(XML) == "mediawiki-xml"
    documents = list(read_documents(XML))
    # 蜜柑島 is a <redirect/>, 旧くるみ山 a #REDIRECT in the text, ノート:みかん島 a talk page (ns 1).
    assert [d.title for d in documents] == ["みかん島", "くるみ山"]
    mikan = documents[0]
    lead = (
        "みかん島（みかんじま）は、架空の内海に浮かぶ島である。島の人口は約800人で、柑橘の栽培が盛んである。"
    )
    assert mikan.sections[0] == lead
    assert any("灯台の記録によれば" in section for section in mikan.sections)
    assert not any("出典" in section or "Mikan" in section for section in mikan.sections)


def test_mediawiki_xml_bz2(tmp_path: Path) -> None:
    path = tmp_path / "jawiki-pages-articles.xml.bz2"
    path.write_bytes(bz2.compress(XML.read_bytes()))
    assert detect_format(path) == "mediawiki-xml"
    expected = [replace(d, origin=d.origin.replace(str(XML), str(path))) for d in read_documents(XML)]
    assert list(read_documents(path)) == expected


def test_format_is_sniffed_when_the_extension_says_nothing(tmp_path: Path) -> None:
    shutil.copy(XML, tmp_path / "dump")
    assert detect_format(tmp_path / "dump") == "mediawiki-xml"


def test_jawiki_country_is_wikitext() -> None:
    path = DATA / "raw" / "jawiki-country" / "jawiki-country.json.gz"
    if not path.exists():
        pytest.skip("../shared/data is not here")
    assert detect_format(path) == "wikitext"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"id": "b", "title": "t", "text": ', "not valid JSON"),
        ('["id", "title", "text"]', "expected a JSON object"),
        ('{"id": "b", "title": "t", "text": 3}', "field 'text' must be a string"),
        ('{"id": "", "title": "t", "text": "x"}', "field 'id' must be a non-empty string"),
        ('{"id": "b", "body": "x"}', "expected {id, title, text}"),
        ('{"title": "t", "text": "x"}', "a wikitext record in a file of passages records"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "title": "t", "text": "x"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        list(read_documents(path))
    assert (caught.value.path, caught.value.line) == (path, 3)
    assert reason in str(caught.value)
    assert str(caught.value).startswith(f"{path}:3: ")


def test_malformed_xml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.xml"
    path.write_text("<mediawiki>\n<page><title>x</title>\n</mediawiki>\n", encoding="utf-8")
    with pytest.raises(InputError, match="malformed XML") as caught:
        list(read_documents(path))
    assert caught.value.line == 3


def test_truncated_bz2_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.xml.bz2"
    path.write_bytes(bz2.compress(XML.read_bytes())[:200])
    with pytest.raises(InputError, match="cannot read"):
        list(read_documents(path))


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        detect_format(tmp_path / "nowhere.jsonl")
    (tmp_path / "notes.txt").write_text("just text\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown format"):
        detect_format(tmp_path / "notes.txt")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no records"):
        detect_format(tmp_path / "empty.jsonl")
