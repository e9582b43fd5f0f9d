"""Cross-modal search: a photo or a text, matched against the graph's entities, documents and captioned images.

Also :func:`link_uncaptioned_images`: an image ingested without a caption gets links to its nearest entities,
stored as mentions with provenance "retrieved" and the similarity as confidence, never as extracted facts.

Everything is compared in the joint space of a trained alignment model (``kgmm train align``): the query
image through its image head, texts (a document's title and text, an entity's "name (type)", a query
string) through its text head, stored images through the image head. Frozen encoder features are cached
(images by content hash, texts by id and text hash), so a second search over the same store only runs the
heads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kgmm.errors import ValidationError

if TYPE_CHECKING:
    from kgmm.store.base import GraphStore

ALIGN_MODEL_ENV = "KGMM_ALIGN_MODEL"
KINDS = ("entities", "documents", "images")
DOCUMENT_CHARS = 1000  # a document is matched by its opening: titles and first sentences carry the topic


def resolve_align_model(model: str | Path | None) -> Path:
    """Return the alignment model folder: ``model``, else ``$KGMM_ALIGN_MODEL``.

    Raises:
        ValidationError: when neither names a folder holding a model, saying how to train one.
    """
    chosen = model or os.environ.get(ALIGN_MODEL_ENV)
    if not chosen:
        raise ValidationError("cross-modal search needs an alignment model: train one with `kgmm train align "
                              f"--pairs FILE --out DIR` and pass --model DIR (or set ${ALIGN_MODEL_ENV})")
    path = Path(chosen)
    if not (path / "config.json").is_file():
        raise ValidationError(f"no alignment model in {path} (no config.json); train one with `kgmm train align "
                              f"--pairs FILE --out {path}`")
    return path


def cross_modal_search(
    store: GraphStore,
    *,
    model: str | Path | None = None,
    image: str | Path | None = None,
    text: str | None = None,
    kinds: Sequence[str] = KINDS,
    limit: int = 10,
) -> dict:
    """Return the entities, documents and images of ``store`` nearest to an image or a text query.

    Args:
        store (GraphStore): the graph.
        model (str or Path, optional): an alignment model folder (default ``$KGMM_ALIGN_MODEL``).
        image (str or Path, optional): the query photo.
        text (str, optional): the query text (exactly one of ``image`` and ``text``).
        kinds (list of str, optional): what to return, among ``entities``, ``documents``, ``images``.
        limit (int, optional): results per kind (default 10).

    Returns:
        ``{"query", "model", "entities": [...], "documents": [...], "images": [...]}`` (the kinds asked for),
        each a list of dicts with ``id``, ``score`` (cosine in the joint space) and what identifies the item.
    """
    from kgmm.tasks.align import load_align_model

    if (image is None) == (text is None or not text.strip()):
        raise ValidationError("give exactly one query: an image (--image PATH) or a non-empty text")
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValidationError(f"unknown result kind(s) {', '.join(unknown) or '(none given)'}; available: {', '.join(KINDS)}")
    if limit < 1:
        raise ValidationError(f"limit must be at least 1, got {limit}")
    model_dir = resolve_align_model(model)
    aligned = load_align_model(model_dir)
    query = aligned.embed_image_files([Path(image)])[0] if image is not None else aligned.embed_texts([text.strip()])[0]

    result: dict = {"query": {"image": str(image)} if image is not None else {"text": text.strip()},
                    "model": str(model_dir)}
    if "entities" in kinds:
        entities = list(store.iter_entities())
        vectors = aligned.embed_entities([e.name for e in entities], [e.type for e in entities]) if entities else None
        result["entities"] = [
            {"id": e.id, "name": e.name, "type": e.type, "score": score}
            for e, score in _top(entities, vectors, query, limit)
        ]
    sources = list(store.iter_sources()) if {"documents", "images"} & set(kinds) else []
    if "documents" in kinds:
        documents = [s for s in sources if s.kind == "document" and (s.title or s.text).strip()]
        texts = [_document_text(s.title, s.text) for s in documents]
        vectors = aligned.embed_texts(texts) if documents else None
        result["documents"] = [
            {"id": s.id, "title": s.title, "origin": s.origin, "snippet": s.text[:160], "score": score}
            for s, score in _top(documents, vectors, query, limit)
        ]
    if "images" in kinds:
        images = [s for s in sources if s.kind == "image" and s.image_path and Path(s.image_path).is_file()]
        vectors = aligned.embed_image_files([Path(s.image_path) for s in images]) if images else None
        result["images"] = [
            {"id": s.id, "path": s.image_path, "caption": s.text, "title": s.title, "score": score}
            for s, score in _top(images, vectors, query, limit)
        ]
    return result


DEFAULT_LINKS_PER_IMAGE = 3
DEFAULT_MIN_SCORE = 0.3


def link_uncaptioned_images(
    store: GraphStore,
    *,
    model: str | Path | None = None,
    per_image: int = DEFAULT_LINKS_PER_IMAGE,
    min_score: float = DEFAULT_MIN_SCORE,
    entity_types: Sequence[str] | None = None,
) -> dict:
    """Link every image source without a caption to its nearest entities, as "retrieved" mentions.

    Each link is a ``Mention`` with ``provenance="retrieved"``, ``confidence`` = the cosine similarity in the
    alignment model's joint space, empty text and sentence, and span 0..0, so it never reads as a stated
    fact. Running it again adds nothing new for the same images (mentions are keyed by entity, source, span).

    Args:
        store (GraphStore): the graph (opened writable).
        model (str or Path, optional): an alignment model folder (default ``$KGMM_ALIGN_MODEL``).
        per_image (int, optional): at most this many links per image (default 3).
        min_score (float, optional): only links at least this similar (default 0.3).
        entity_types (list of str, optional): link only to entities of these types (default all).

    Returns:
        ``{"images": uncaptioned images seen, "linked": images given at least one link, "links": mentions
        written, "skipped": [ids of images whose file is missing]}``.
    """
    from kgmm.schema import PROVENANCE_RETRIEVED, Mention
    from kgmm.tasks.align import load_align_model

    if per_image < 1:
        raise ValidationError(f"per_image must be at least 1, got {per_image}")
    if not -1.0 <= min_score <= 1.0:
        raise ValidationError(f"min_score is a cosine similarity in [-1, 1], got {min_score}")
    model_dir = resolve_align_model(model)
    uncaptioned = [s for s in store.iter_sources() if s.kind == "image" and not (s.text or "").strip()]
    readable = [s for s in uncaptioned if s.image_path and Path(s.image_path).is_file()]
    report = {"images": len(uncaptioned), "linked": 0, "links": 0,
              "skipped": [s.id for s in uncaptioned if s not in readable]}
    wanted = set(entity_types) if entity_types else None
    entities = [e for e in store.iter_entities() if wanted is None or e.type in wanted]
    if not readable or not entities:
        return report
    aligned = load_align_model(model_dir)
    image_vectors = aligned.embed_image_files([Path(s.image_path) for s in readable])
    entity_vectors = aligned.embed_entities([e.name for e in entities], [e.type for e in entities])
    best = (image_vectors @ entity_vectors.T).topk(min(per_image, len(entities)), dim=1)
    mentions = []
    for source, indices, scores in zip(readable, best.indices.tolist(), best.values.tolist(), strict=True):
        links = [Mention(entity_id=entities[i].id, source_id=source.id, start=0, end=0, text="", sentence="",
                         provenance=PROVENANCE_RETRIEVED, confidence=round(max(0.0, min(1.0, score)), 4))
                 for i, score in zip(indices, scores, strict=True) if score >= min_score]
        report["linked"] += bool(links)
        mentions.extend(links)
    report["links"] = store.upsert_mentions(mentions) if mentions else 0
    return report


def _document_text(title: str, text: str) -> str:
    opening = text[:DOCUMENT_CHARS]
    return f"{title}. {opening}" if title and not opening.startswith(title) else opening


def _top(items: list, vectors, query, limit: int) -> list[tuple[object, float]]:
    if not items:
        return []
    scores = vectors @ query
    best = scores.topk(min(limit, len(items)))
    return [(items[i], round(float(s), 4)) for i, s in zip(best.indices.tolist(), best.values.tolist(), strict=True)]
