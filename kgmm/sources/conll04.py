"""Reader for the CoNLL04 entity-and-relation corpus in its JSON form.

The file is a list of records ``{"id", "text", "entities": [[text, type]], "triples": [[head, relation, tail]]}``;
``text`` is pre-tokenised (tokens joined by single spaces) and entities are given by surface form only,
so their character offsets are recovered here by locating them in the text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from kgmm.errors import SourceError

__all__ = ["Conll04Entity", "Conll04Sentence", "Conll04Triple", "read_conll04"]


@dataclass(frozen=True)
class Conll04Entity:
    """An entity of a sentence: its text and type, and where it was found (``None`` if not found)."""

    text: str
    type: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Conll04Triple:
    """A relation between two entities given by their text: ``(head, relation, tail)``."""

    head: str
    relation: str
    tail: str


@dataclass
class Conll04Sentence:
    """One CoNLL04 sentence with its entities and relation triples."""

    id: str
    text: str
    entities: list[Conll04Entity] = field(default_factory=list)
    triples: list[Conll04Triple] = field(default_factory=list)


def read_conll04(path: str | Path) -> list[Conll04Sentence]:
    """Read a CoNLL04 JSON file.

    Args:
        path (str | Path): a JSON file holding a list of sentence records.

    Raises:
        SourceError: the file is missing, is not JSON, or a record lacks a field (the message names
            the file and the JSON line or record).
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SourceError(f"cannot read CoNLL04 file ({e.strerror}); check the path", path=str(path)) from e
    try:
        records = json.loads(raw)
    except json.JSONDecodeError as e:
        raise SourceError(
            f"malformed JSON ({e.msg}, column {e.colno}); fix or re-export the file", path=str(path), line=e.lineno
        ) from e
    if not isinstance(records, list):
        raise SourceError(f"expected a JSON list of sentence records, got {type(records).__name__}", path=str(path))
    return [_parse_record(record, index, str(path)) for index, record in enumerate(records)]


def _parse_record(record: object, index: int, path: str) -> Conll04Sentence:
    where = f"record {index}"
    if not isinstance(record, dict):
        raise SourceError(
            f"{where}: expected an object with id, text, entities, triples; got {type(record).__name__}", path=path
        )
    missing = [key for key in ("text", "entities") if key not in record]
    if missing:
        raise SourceError(f"{where}: missing field(s) {', '.join(missing)}", path=path)
    text = record["text"]
    if not isinstance(text, str):
        raise SourceError(f"{where}: 'text' must be a string", path=path)
    try:
        entity_rows = [(str(text_), str(type_)) for text_, type_ in record["entities"]]
        triples = [Conll04Triple(str(h), str(r), str(t)) for h, r, t in record.get("triples", [])]
    except (TypeError, ValueError) as e:
        raise SourceError(
            f"{where}: entities must be [text, type] pairs and triples [head, relation, tail] lists", path=path
        ) from e
    return Conll04Sentence(
        id=str(record.get("id", index)),
        text=text,
        entities=locate_entities(text, entity_rows),
        triples=triples,
    )


def locate_entities(text: str, entities: list[tuple[str, str]]) -> list[Conll04Entity]:
    """Give each ``(text, type)`` entity character offsets in ``text``, keeping the input order.

    Longer entities are placed first, each at its earliest whole-token occurrence that overlaps no
    entity already placed (a repeated entity takes successive occurrences); an entity found nowhere
    keeps ``start = end = None``.
    """
    order = sorted(range(len(entities)), key=lambda i: (-len(entities[i][0]), i))
    taken: list[tuple[int, int]] = []
    spans: dict[int, tuple[int, int]] = {}
    for i in order:
        surface = entities[i][0]
        if not surface:
            continue
        span = _first_free_occurrence(text, surface, taken)
        if span is not None:
            spans[i] = span
            taken.append(span)
    located = []
    for i, (surface, type_) in enumerate(entities):
        start, end = spans.get(i, (None, None))
        located.append(Conll04Entity(text=surface, type=type_, start=start, end=end))
    return located


def _first_free_occurrence(text: str, surface: str, taken: list[tuple[int, int]]) -> tuple[int, int] | None:
    whole_token = re.compile(r"(?<!\S)" + re.escape(surface) + r"(?!\S)")
    anywhere = re.compile(re.escape(surface))
    for pattern in (whole_token, anywhere):
        for match in pattern.finditer(text):
            start, end = match.span()
            if all(end <= s or start >= e for s, e in taken):
                return start, end
    return None
