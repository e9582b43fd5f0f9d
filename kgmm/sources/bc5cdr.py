"""Reader for BioCreative V CDR (BC5CDR) files in PubTator format.

A document is a block of lines separated from the next by a blank line::

    227508|t|Naloxone reverses the antihypertensive effect of clonidine.
    227508|a|In unanesthetized, spontaneously hypertensive rats ...
    227508<TAB>0<TAB>8<TAB>Naloxone<TAB>Chemical<TAB>D009270
    227508<TAB>CID<TAB>D008750<TAB>D007022

Mention offsets index ``title + " " + abstract``; a mention id is ``-1`` (no id) or several ids
joined by ``|`` (composite mentions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kgmm.errors import SourceError

__all__ = ["PubtatorDoc", "PubtatorMention", "PubtatorRelation", "read_pubtator"]


@dataclass(frozen=True)
class PubtatorMention:
    """One annotated mention.

    Args:
        start (int): character offset in ``PubtatorDoc.text``.
        end (int): offset one past the mention.
        text (str): the surface form (equals ``doc.text[start:end]``).
        type (str): ``Chemical`` or ``Disease``.
        ids (tuple[str, ...]): MeSH ids; empty when the file says ``-1``.
    """

    start: int
    end: int
    text: str
    type: str
    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class PubtatorRelation:
    """A document-level relation line: ``pmid<TAB>CID<TAB>chemical id<TAB>disease id``."""

    type: str
    head: str
    tail: str


@dataclass
class PubtatorDoc:
    """A PubMed title and abstract with its mentions and document-level relations."""

    pmid: str
    title: str
    abstract: str
    mentions: list[PubtatorMention] = field(default_factory=list)
    relations: list[PubtatorRelation] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The text mention offsets refer to: title, one space, abstract."""
        return f"{self.title} {self.abstract}"

    @property
    def cid_pairs(self) -> set[tuple[str, str]]:
        """The chemical-induced-disease pairs as ``{(chemical MeSH id, disease MeSH id)}``."""
        return {(rel.head, rel.tail) for rel in self.relations if rel.type == "CID"}


def read_pubtator(path: str | Path) -> list[PubtatorDoc]:
    """Read a PubTator file into documents.

    Args:
        path (str | Path): the ``.PubTator.txt`` file.

    Raises:
        SourceError: the file is missing, or a line is malformed (the message names file and line).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise SourceError(f"cannot read PubTator file ({e.strerror}); check the path", path=str(path)) from e
    except UnicodeDecodeError as e:
        raise SourceError("not UTF-8 text; is this a PubTator file?", path=str(path)) from e

    docs: list[PubtatorDoc] = []
    current: PubtatorDoc | None = None
    for line_no, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            current = None
            continue
        if current is None:
            current = _start_document(line, str(path), line_no)
            docs.append(current)
            continue
        _add_line(current, line, str(path), line_no)
    return docs


def _start_document(line: str, path: str, line_no: int) -> PubtatorDoc:
    pmid, sep, title = line.partition("|t|")
    if not sep or not pmid or "\t" in pmid:
        raise SourceError(
            f"expected a title line 'PMID|t|title' to start a document, got {line[:60]!r}", path=path, line=line_no
        )
    return PubtatorDoc(pmid=pmid, title=title, abstract="")


def _add_line(doc: PubtatorDoc, line: str, path: str, line_no: int) -> None:
    abstract_prefix = f"{doc.pmid}|a|"
    if line.startswith(abstract_prefix):
        doc.abstract = line[len(abstract_prefix) :]
        return
    fields = line.split("\t")
    if fields[0] != doc.pmid:
        raise SourceError(
            f"line belongs to PMID {fields[0]!r} inside document {doc.pmid}; separate documents with a blank line",
            path=path,
            line=line_no,
        )
    if len(fields) == 4:
        doc.relations.append(PubtatorRelation(type=fields[1], head=fields[2], tail=fields[3]))
    elif len(fields) in (6, 7):
        doc.mentions.append(_parse_mention(doc, fields, path, line_no))
    else:
        raise SourceError(
            f"expected a mention line (6 tab-separated fields) or a relation line (4 fields), got {len(fields)} fields",
            path=path,
            line=line_no,
        )


def _parse_mention(doc: PubtatorDoc, fields: list[str], path: str, line_no: int) -> PubtatorMention:
    try:
        start, end = int(fields[1]), int(fields[2])
    except ValueError as e:
        raise SourceError(
            f"mention offsets must be integers, got {fields[1]!r} and {fields[2]!r}", path=path, line=line_no
        ) from e
    text = doc.text
    if not 0 <= start < end <= len(text):
        raise SourceError(
            f"mention offsets {start}-{end} fall outside the document text (length {len(text)})",
            path=path,
            line=line_no,
        )
    if text[start:end] != fields[3]:
        raise SourceError(
            f"mention text {fields[3]!r} does not match the document text at {start}-{end} ({text[start:end]!r})",
            path=path,
            line=line_no,
        )
    ids = tuple(i for i in fields[5].split("|") if i and i != "-1")
    return PubtatorMention(start=start, end=end, text=fields[3], type=fields[4], ids=ids)
