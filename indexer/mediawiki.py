"""Articles of a MediaWiki XML dump (`pages-articles.xml[.bz2]`), streamed page by page."""

import io
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kotae.core.errors import InputError

ARTICLE_NAMESPACE = "0"
# Old dumps mark redirects only in the text (English keyword or the Japanese wiki's alias).
_REDIRECT = re.compile(r"\s*#(?:REDIRECT|転送)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Page:
    title: str
    wikitext: str


def iter_articles(stream: BinaryIO, path: Path) -> Iterator[Page]:
    """Main-namespace pages that are not redirects; the parsed tree is cleared after each page so that
    memory stays flat on multi-gigabyte dumps."""
    root: ElementTree.Element | None = None
    try:
        for event, element in ElementTree.iterparse(stream, events=("start", "end")):
            if root is None:
                root = element
            if event != "end" or _local(element.tag) != "page":
                continue
            page = _article(element)
            root.clear()
            if page is not None:
                yield page
    except ElementTree.ParseError as error:
        line, _column = error.position
        raise InputError(path, line, f"malformed XML: {error}") from error


def iter_pages_of_streams(xml: bytes, path: Path, origin: str) -> Iterator[Page]:
    """Articles of a run of whole `<page>` elements, as one stream of a multistream dump holds them (the
    first stream also holds the dump's header, the last its closing tag)."""
    first, last = xml.find(b"<page>"), xml.rfind(b"</page>")
    if first < 0 or last < 0:
        return
    head, tail = xml[:first].strip(), xml[last + len(b"</page>") :].strip()
    if (head and not head.startswith(b"<mediawiki")) or (tail and tail != b"</mediawiki>"):
        raise InputError(path, None, f"{origin}: the bz2 streams do not hold whole pages")
    body = b"<pages>" + xml[first : last + len(b"</page>")] + b"</pages>"
    try:
        for _event, element in ElementTree.iterparse(io.BytesIO(body), events=("end",)):
            if _local(element.tag) == "page":
                page = _article(element)
                element.clear()
                if page is not None:
                    yield page
    except ElementTree.ParseError as error:
        raise InputError(path, None, f"{origin}: malformed XML: {error}") from error


def _article(page: ElementTree.Element) -> Page | None:
    fields = {_local(child.tag): child for child in page}
    namespace = fields.get("ns")
    if namespace is not None and (namespace.text or "").strip() != ARTICLE_NAMESPACE:
        return None
    if "redirect" in fields or "title" not in fields:
        return None
    revision = fields.get("revision")
    if revision is None:
        return None
    text = next((child.text for child in revision if _local(child.tag) == "text"), None)
    if not text or _REDIRECT.match(text):
        return None
    return Page(title=(fields["title"].text or "").strip(), wikitext=text)


def _local(tag: str) -> str:
    """Tag name without the export schema's namespace (`{http://www.mediawiki.org/xml/export-0.11/}page`)."""
    return tag.rpartition("}")[2]
