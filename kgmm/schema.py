"""The graph model: sources, mentions, entities and relations, as plain dataclasses.

Every layer passes these values; nothing here imports spaCy, torch or a database driver.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

SourceKind = Literal["document", "image"]

# How a mention came to be: read from the source's text, or linked by a similarity search (an
# uncaptioned image and its nearest entities); retrieved links are low-confidence provenance, not facts.
PROVENANCE_EXTRACTED = "extracted"
PROVENANCE_RETRIEVED = "retrieved"
PROVENANCES = (PROVENANCE_EXTRACTED, PROVENANCE_RETRIEVED)

# Labels and relation types reach Cypher as identifiers, so only this shape is accepted.
_LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_SPACE_RE = re.compile(r"\s+")
_NON_WORD_RE = re.compile(r"[^\w\s\-+/.']", re.UNICODE)


def is_valid_label(label: str) -> bool:
    """Return whether ``label`` may be used as a node label or relationship type."""
    return isinstance(label, str) and _LABEL_RE.fullmatch(label) is not None


def content_hash(*parts: str | bytes) -> str:
    """Return a short, stable hex digest of ``parts`` (used for source ids)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
        digest.update(b"\x1f")
    return digest.hexdigest()[:20]


def normalize_name(name: str) -> str:
    """Return the comparison key of a name: NFKC, case-folded, punctuation-light, single-spaced."""
    text = unicodedata.normalize("NFKC", name).casefold()
    text = _NON_WORD_RE.sub(" ", text)
    return _SPACE_RE.sub(" ", text).strip(" -./'")


def entity_id(domain: str, entity_type: str, name: str) -> str:
    """Return the canonical id ``domain:type:normalised-name`` of an entity without an ontology id."""
    return f"{domain}:{entity_type.lower()}:{normalize_name(name)}"


@dataclass
class Source:
    """A document or an image with its caption: the place facts come from.

    Args:
        id (str): content-derived id, so the same content is one source however often it is read.
        kind (str): ``"document"`` or ``"image"``.
        text (str): the document text, or the image caption (may be empty for an uncaptioned image).
        origin (str): where it was read: a path, with ``:line`` or ``#row`` for records in a file.
        title (str): a short human label (file name, product name, case id).
        image_path (str, optional): absolute path of the image file, for images.
        subject (str, optional): the name of the thing the source is about (a product title), used
            by domain patterns that attach attributes to it.
        subject_type (str, optional): the subject's entity type (``Product``).
        attributes (dict): structured facts about the subject, entity type -> value
            (``{"Colour": "Navy Blue"}``), from catalogue columns; stored as relations of the subject.
        metadata (dict): small JSON-serialisable extras (dataset fields, modality, ...).
    """

    id: str
    kind: SourceKind
    text: str
    origin: str
    title: str = ""
    image_path: str | None = None
    subject: str | None = None
    subject_type: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @classmethod
    def document(cls, text: str, origin: str, *, key: str | None = None, **kwargs) -> Source:
        """Make a document source whose id is the hash of its text (or of ``key``, for records with ids)."""
        return cls(id="doc:" + content_hash(key if key is not None else text), kind="document", text=text, origin=origin, **kwargs)

    @classmethod
    def image(cls, image_bytes: bytes, caption: str, origin: str, image_path: str, **kwargs) -> Source:
        """Make an image source whose id is the hash of its pixels' file and its caption."""
        return cls(
            id="img:" + content_hash(image_bytes, caption),
            kind="image",
            text=caption,
            origin=origin,
            image_path=image_path,
            **kwargs,
        )


@dataclass
class Entity:
    """A canonical thing in the graph.

    Args:
        id (str): ontology id (``HP:0001945``) or ``domain:type:normalised-name``.
        name (str): preferred name.
        type (str): entity type from the domain pack (``Disease``, ``Colour``, ...).
        domain (str): the domain pack that produced it.
        aliases (list[str]): other surface forms and synonyms seen or known.
        ontology_ids (list[str]): cross-references such as ``ICD10CM:J10`` or ``DDXPLUS:E_91``.
    """

    id: str
    name: str
    type: str
    domain: str
    aliases: list[str] = field(default_factory=list)
    ontology_ids: list[str] = field(default_factory=list)


@dataclass
class Mention:
    """One place where a source mentions an entity: ``(Entity)-[:MENTIONED_IN]->(Source)``.

    Args:
        entity_id (str): the resolved entity.
        source_id (str): the document or image.
        start (int): character offset of the mention in the source text.
        end (int): character offset one past the mention.
        text (str): the surface form.
        sentence (str): the sentence that contains it.
        negated (bool): stated as absent ("denies fever").
        uncertain (bool): stated as possible ("possible pneumonia").
        provenance (str): how the mention was found: ``"extracted"`` from the source's text, or
            ``"retrieved"`` by a similarity search (an image without a caption linked to its nearest
            entities). A retrieved mention has empty ``text`` and ``sentence`` and ``start = end = 0``.
            (default: ``"extracted"``)
        confidence (float): in [0, 1]; 1.0 for an extracted mention, the retrieval similarity for a
            retrieved one. (default: ``1.0``)
    """

    entity_id: str
    source_id: str
    start: int
    end: int
    text: str
    sentence: str
    negated: bool = False
    uncertain: bool = False
    provenance: str = PROVENANCE_EXTRACTED
    confidence: float = 1.0


@dataclass
class Relation:
    """A typed fact between two entities. One edge per (head, type, tail); sources accumulate.

    Args:
        head (str): head entity id.
        type (str): relation type from the domain schema (``TREATS``).
        tail (str): tail entity id.
        confidence (float): the extractor's confidence in [0, 1]; the highest seen is kept.
        extractor (str): the component that produced it (``dep_pattern``, ``catalogue``, ...).
        sources (list[str]): ids of the sources that stated it.
        sentences (list[str]): the sentences that stated it, aligned with ``sources`` where known.
    """

    head: str
    type: str
    tail: str
    confidence: float
    extractor: str
    sources: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.head, self.type, self.tail)


@dataclass
class Extraction:
    """What the extraction pipeline found in one source."""

    source: Source
    entities: list[Entity] = field(default_factory=list)
    mentions: list[Mention] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)


@dataclass
class EntityMatch:
    """An entity found by a lookup, with how well the query matched (1.0 exact)."""

    entity: Entity
    score: float
    matched: str


@dataclass
class Subgraph:
    """Entities and the relations among them, as returned by neighbourhood and path queries."""

    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)


@dataclass
class GraphStats:
    """Counts a user checks first."""

    entities: int
    relations: int
    documents: int
    images: int
    mentions: int
    entities_by_type: dict[str, int] = field(default_factory=dict)
    relations_by_type: dict[str, int] = field(default_factory=dict)
    retrieved_links: int = 0  # mentions with provenance "retrieved" (counted in ``mentions`` too)

    @classmethod
    def of_counts(cls, entities_by_type: dict[str, int], relations_by_type: dict[str, int],
                  sources_by_kind: dict[str, int], mentions: int, retrieved_links: int) -> GraphStats:
        """The stats of a store's per-type counts (what each backend's count queries return)."""
        return cls(entities=sum(entities_by_type.values()), relations=sum(relations_by_type.values()),
                   documents=sources_by_kind.get("document", 0), images=sources_by_kind.get("image", 0),
                   mentions=mentions, entities_by_type=dict(sorted(entities_by_type.items())),
                   relations_by_type=dict(sorted(relations_by_type.items())), retrieved_links=retrieved_links)
