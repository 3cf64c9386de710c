"""`KOTAE_API_KEYS`: keys scoped to collections, from the variable or a JSON file; errors never show a key."""

import json
from http import HTTPStatus
from pathlib import Path

import pytest

from kotae.core.errors import KotaeError
from kotae.server.core.api_keys import OPEN, ApiKeys
from kotae.server.core.errors import APIError


def test_pairs_give_each_key_its_collections() -> None:
    keys = ApiKeys.parse("all-key-0001:*, manuals-key-01:manuals+hr")
    everything = keys.scope_of("all-key-0001")
    assert everything is not None and everything.collections is None
    scoped = keys.scope_of("manuals-key-01")
    assert scoped is not None and scoped.collections == {"manuals", "hr"}
    scoped.check("hr")
    with pytest.raises(APIError) as refused:
        scoped.check("default")
    assert refused.value.status == HTTPStatus.FORBIDDEN
    assert "manuals" not in refused.value.message and "hr" not in refused.value.message
    assert keys.scope_of("manuals-key-0") is None and keys.scope_of("") is None
    OPEN.check("anything")


def test_a_json_file_maps_keys_to_collection_lists(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"reader-key-01": ["manuals"], "admin-ish-02": "*"}), encoding="utf-8")
    keys = ApiKeys.parse(str(path))
    assert keys.scope_of("reader-key-01").collections == {"manuals"}  # type: ignore[union-attr]
    assert keys.scope_of("admin-ish-02").collections is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("short:*", "pair 1: a key must be at least 8 characters"),
        ("good-key-0001:*,secret-key-99:../etc", "pair 2: '../etc' is neither a collection name"),
        ("secret-key-99", "pair 1: '' is neither a collection name"),
    ],
)
def test_bad_pairs_are_named_by_position_never_by_key(value: str, message: str) -> None:
    with pytest.raises(KotaeError, match=message) as error:
        ApiKeys.parse(value)
    assert "secret-key-99" not in str(error.value)


def test_a_bad_file_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{\n"reader-key-01": ["manuals"],\n}', encoding="utf-8")
    with pytest.raises(KotaeError, match=r"keys.json:3"):
        ApiKeys.parse(str(path))
    path.write_text(json.dumps({"reader-key-01": 5}), encoding="utf-8")
    with pytest.raises(KotaeError, match="entry 1: expected a list"):
        ApiKeys.parse(str(path))
