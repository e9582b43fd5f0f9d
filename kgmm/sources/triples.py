"""Read a knowledge base of triples (``head|relation|tail`` or ``head<TAB>relation<TAB>tail``, one a line).

This is the format of MetaQA's ``kb.txt`` (``|``) and of the link-prediction splits ``train.txt`` /
``valid.txt`` / ``test.txt`` (TAB). The separator is detected once per file from its first non-blank
line: a TAB if that line has one, else ``|``. Blank lines are skipped; any other line must have
exactly three non-empty fields.

Every name becomes one entity of the same type (``Concept`` by default: a triples file says nothing
about types, and one type keeps one name one entity however many relations it plays a part in), with
the id :func:`triple_entity_id` gives. Names that differ only in case or punctuation share that id; the
first spelling read is the entity's name and the others become its aliases. Relation names become
relation types by :func:`relation_type` (``written_by`` -> ``WRITTEN_BY``). Relations carry confidence
1.0, extractor ``"triples"`` and no sources, so reading stays cheap (129k MetaQA lines in about 0.15 s).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from kgmm.errors import SourceError
from kgmm.schema import Entity, Relation, is_valid_label, normalize_name
from kgmm.utils import paused_gc

DEFAULT_DOMAIN = "general"
DEFAULT_ENTITY_TYPE = "Concept"
EXTRACTOR = "triples"
_NON_IDENTIFIER = re.compile(r"[^A-Za-z0-9]+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_TYPE_LENGTH = 64  # what is_valid_label accepts


@dataclass
class Triples:
    """What :func:`read_triples` read from one file.

    Args:
        path (Path): the file.
        entities (list[Entity]): one per distinct entity id, in order of first appearance.
        relations (list[Relation]): one per line, in file order (a repeated line repeats its relation).
        relation_names (dict[str, str]): relation type -> the name the file used for it.
    """

    path: Path
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    relation_names: dict[str, str] = field(default_factory=dict)


def relation_type(name: str) -> str:
    """Return the relation type of a relation name: upper-cased, each run of other characters than
    letters and digits turned into one ``_`` and each camelCase boundary marked by one, leading and trailing
    ``_`` dropped (the words of a name stay readable: question synthesis reads them).

    ``written_by`` -> ``WRITTEN_BY``; ``/film/film/genre`` -> ``FILM_FILM_GENRE``; ``placeOfBirth`` ->
    ``PLACE_OF_BIRTH``. A result longer than
    64 characters keeps its first 55 and a hash of the whole name, so distinct names stay distinct.

    Raises:
        ValueError: when the name has no letter or digit, or starts with a digit.
    """
    text = _NON_IDENTIFIER.sub("_", _CAMEL_BOUNDARY.sub("_", name)).strip("_").upper()
    if len(text) > _MAX_TYPE_LENGTH:
        text = f"{text[:55]}_{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8].upper()}"
    if not is_valid_label(text):
        raise ValueError(
            f"relation name {name!r} gives no valid relation type ({text!r}): it needs a letter or digit, and "
            "a type must start with a letter"
        )
    return text


def triple_entity_id(name: str, *, domain: str = DEFAULT_DOMAIN, entity_type: str = DEFAULT_ENTITY_TYPE) -> str:
    """Return the id :func:`read_triples` gives the entity named ``name``.

    It is :func:`kgmm.schema.entity_id` (``domain:type:normalised-name``), except for a name that normalises
    to nothing (MetaQA has a film called ``$``): its id keeps the name as it is.
    """
    key = normalize_name(name)
    return f"{domain}:{entity_type.lower()}:{key or name.strip()}"


def read_triple_lines(path: str | Path) -> tuple[list[str], str]:
    """Return the lines of a triples file and its separator (``"\t"`` or ``"|"``, detected as above).

    Raises:
        SourceError: when the path is a directory, missing or not UTF-8 text, or its first non-blank line
            has neither separator.
    """
    path = Path(path)
    if path.is_dir():
        raise SourceError("is a directory, expected a triples file (head<TAB>relation<TAB>tail per line)", path=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SourceError("no such triples file; check the path", path=str(path)) from e
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read the triples file ({e}); it must be UTF-8 text", path=str(path)) from e
    lines = text.splitlines()
    return lines, _detect_separator(path, lines)


def _detect_separator(path: Path, lines: list[str]) -> str:
    for line in lines:
        if line.strip():
            if "\t" in line:
                return "\t"
            if "|" in line:
                return "|"
            raise SourceError(
                "expected triples as head|relation|tail or head<TAB>relation<TAB>tail, found neither separator; "
                "write one triple a line with one of them",
                path=str(path), line=lines.index(line) + 1,
            )
    return "|"


def read_triples(
    path: str | Path,
    *,
    domain: str = DEFAULT_DOMAIN,
    entity_type: str = DEFAULT_ENTITY_TYPE,
) -> Triples:
    """Read the triples file ``path`` into entities and relations.

    Args:
        path (str or Path): a ``|``- or TAB-separated triples file (UTF-8).
        domain (str, optional): the domain of the entities, part of their ids. (default: ``"general"``)
        entity_type (str, optional): the type of every entity. (default: ``"Concept"``)

    Raises:
        SourceError: when the file cannot be read, or a line is not a triple (the error names the file and
            line, and how to fix it).
    """
    path = Path(path)
    if not is_valid_label(entity_type):
        raise SourceError(
            f"invalid entity type {entity_type!r}: use letters, digits and underscores, starting with a letter",
            path=str(path),
        )
    lines, separator = read_triple_lines(path)
    prefix = f"{domain}:{entity_type.lower()}:"

    with paused_gc():
        return _parse(path, lines, separator, prefix, domain, entity_type)




def _parse(path: Path, lines: list[str], separator: str, prefix: str, domain: str, entity_type: str) -> Triples:
    shown = "|" if separator == "|" else "TAB"
    ids: dict[str, str] = {}  # name as written -> entity id
    entities: dict[str, Entity] = {}
    types: dict[str, str] = {}  # relation name -> relation type
    names_of_type: dict[str, str] = {}
    relations: list[Relation] = []
    append = relations.append
    for number, line in enumerate(lines, 1):
        parts = line.split(separator)
        if len(parts) != 3:
            if not line.strip():
                continue
            raise SourceError(
                f"expected 3 fields separated by {shown} (head{separator}relation{separator}tail), found {len(parts)}: "
                f"{line[:80]!r}; fix or remove this line (the separator was detected from the first line)",
                path=str(path), line=number,
            )
        head, name, tail = parts
        head_id = ids.get(head)
        if head_id is None:
            head_id = _entity(head, prefix, entity_type, domain, ids, entities, path, number)
        tail_id = ids.get(tail)
        if tail_id is None:
            tail_id = _entity(tail, prefix, entity_type, domain, ids, entities, path, number)
        type_ = types.get(name)
        if type_ is None:
            type_ = _relation_type(name, types, names_of_type, path, number)
        append(Relation(head_id, type_, tail_id, 1.0, EXTRACTOR, [], []))
    return Triples(path=path, entities=list(entities.values()), relations=relations, relation_names=names_of_type)


def _entity(
    raw: str, prefix: str, entity_type: str, domain: str, ids: dict[str, str], entities: dict[str, Entity],
    path: Path, number: int,
) -> str:
    name = raw.strip()
    if not name:
        raise SourceError(
            "empty head or tail name; every line needs head, relation and tail", path=str(path), line=number
        )
    entity_id = prefix + (normalize_name(name) or name)
    ids[raw] = entity_id
    known = entities.get(entity_id)
    if known is None:
        entities[entity_id] = Entity(entity_id, name, entity_type, domain)
    elif name != known.name and name not in known.aliases:
        known.aliases.append(name)
    return entity_id


def _relation_type(name: str, types: dict[str, str], names_of_type: dict[str, str], path: Path, number: int) -> str:
    try:
        type_ = relation_type(name)
    except ValueError as e:
        raise SourceError(f"{e}; rename the relation", path=str(path), line=number) from e
    other = names_of_type.get(type_)
    if other is not None and other != name.strip():
        raise SourceError(
            f"relation names {other!r} and {name.strip()!r} both become the relation type {type_}; "
            "rename one of them so they stay distinct",
            path=str(path), line=number,
        )
    types[name] = type_
    names_of_type[type_] = name.strip()
    return type_
