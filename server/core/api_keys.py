"""API keys for the query routes (`KOTAE_API_KEYS`), each scoped to the collections it may read."""

import hmac
import json
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from kotae.core.errors import InputError, KotaeError
from kotae.indexer.layout import COLLECTION_NAME
from kotae.server.core.errors import APIError

ALL_COLLECTIONS = "*"


@dataclass(frozen=True, slots=True)
class ReaderScope:
    """What the caller of a query route may read: `None` collections means every one (no keys are
    configured, or the key holds `*`)."""

    collections: frozenset[str] | None

    def check(self, collection: str) -> None:
        """403 for a collection outside the scope. The message names only the collection asked for:
        which ones the key does hold, or which exist, is not the caller's business."""
        if self.collections is not None and collection not in self.collections:
            raise APIError(
                HTTPStatus.FORBIDDEN,
                f"this API key may not read collection {collection!r}",
                "collection_forbidden",
            )


OPEN = ReaderScope(None)


class ApiKeys:
    def __init__(self, scopes: dict[str, frozenset[str]]) -> None:
        self._scopes = [(key.encode(), collections) for key, collections in scopes.items()]

    @classmethod
    def parse(cls, value: str) -> "ApiKeys":
        """`KEY:COLLECTION[+COLLECTION...]` pairs, comma-separated, or the path of a JSON file mapping each
        key to a list of collections (or to "*"). Messages point at the pair or file entry, never at a key."""
        path = Path(value.strip())
        if ":" not in value and path.suffix == ".json":
            return cls._from_file(path)
        scopes: dict[str, frozenset[str]] = {}
        for number, pair in enumerate(value.split(","), 1):
            key, _, collections = pair.strip().partition(":")
            scopes[key] = _scope(key, collections.split("+"), f"KOTAE_API_KEYS: pair {number}")
        return cls(scopes)

    @classmethod
    def _from_file(cls, path: Path) -> "ApiKeys":
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise KotaeError(f"KOTAE_API_KEYS: cannot read {path}: {error.strerror}") from error
        except json.JSONDecodeError as error:
            raise InputError(path, error.lineno, f"not valid JSON: {error.msg}") from error
        if not isinstance(entries, dict):
            raise InputError(path, None, 'expected an object {"KEY": ["COLLECTION", ...] or "*"}')
        scopes = {}
        for number, (key, collections) in enumerate(entries.items(), 1):
            names = [collections] if isinstance(collections, str) else collections
            if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
                raise InputError(path, None, f'entry {number}: expected a list of collection names or "*"')
            scopes[key] = _scope(key, names, f"{path}: entry {number}")
        return cls(scopes)

    def scope_of(self, given: str) -> ReaderScope | None:
        """The scope of a presented key; None when it is no key. Every key is compared, each in constant
        time, so the time taken says nothing about which key came close."""
        presented = given.encode()
        found = None
        for key, collections in self._scopes:
            if hmac.compare_digest(presented, key):
                found = ReaderScope(None if ALL_COLLECTIONS in collections else collections)
        return found


def _scope(key: str, names: list[str], where: str) -> frozenset[str]:
    if len(key) < 8:
        raise KotaeError(f"{where}: a key must be at least 8 characters long")
    names = [name.strip() for name in names]
    for name in names:
        if name != ALL_COLLECTIONS and not COLLECTION_NAME.fullmatch(name):
            raise KotaeError(f"{where}: {name!r} is neither a collection name nor {ALL_COLLECTIONS!r}")
    return frozenset(names)
