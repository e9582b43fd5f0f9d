"""Ingest: read sources, extract with a domain pack, write to a graph store in idempotent batches.

Sources already in the store are skipped, and each batch writes its sources last, so an ingest that
was interrupted can be run again and ends in the same graph as one that was not.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kgmm.errors import SourceError
from kgmm.schema import Entity, Extraction, Relation, Source
from kgmm.store.base import GraphStore

DEFAULT_BATCH_SIZE = 256


@dataclass
class IngestReport:
    """What an ingest did, with the time spent reading, extracting and writing."""

    sources_read: int = 0
    sources_new: int = 0
    sources_known: int = 0
    entities_new: int = 0
    relations_new: int = 0
    mentions_new: int = 0
    problems: list[str] = field(default_factory=list)
    seconds_read: float = 0.0
    seconds_extract: float = 0.0
    seconds_store: float = 0.0

    @property
    def seconds_total(self) -> float:
        return self.seconds_read + self.seconds_extract + self.seconds_store

    def to_dict(self) -> dict:
        data = asdict(self)
        data["seconds_total"] = round(self.seconds_total, 3)
        return data


def merge_extractions(extractions: Sequence[Extraction]) -> tuple[list[Entity], list[Relation]]:
    """Merge the entities (aliases) and relations (sources, confidence) of several extractions."""
    entities: dict[str, Entity] = {}
    relations: dict[tuple[str, str, str], Relation] = {}
    for extraction in extractions:
        for entity in extraction.entities:
            known = entities.get(entity.id)
            if known is None:
                entities[entity.id] = Entity(entity.id, entity.name, entity.type, entity.domain, list(entity.aliases), list(entity.ontology_ids))
                continue
            known.aliases.extend(a for a in entity.aliases if a not in known.aliases)
            known.ontology_ids.extend(o for o in entity.ontology_ids if o not in known.ontology_ids)
        for relation in extraction.relations:
            known = relations.get(relation.key)
            if known is None:
                relations[relation.key] = Relation(
                    relation.head, relation.type, relation.tail, relation.confidence, relation.extractor,
                    list(relation.sources), list(relation.sentences),
                )
                continue
            known.confidence = max(known.confidence, relation.confidence)
            sentences = relation.sentences + [""] * (len(relation.sources) - len(relation.sentences))
            for source_id, sentence in zip(relation.sources, sentences, strict=False):
                if source_id not in known.sources:
                    known.sources.append(source_id)
                    known.sentences.append(sentence)
    return list(entities.values()), list(relations.values())


def write_extractions(store: GraphStore, extractions: Sequence[Extraction]) -> tuple[int, int, int, int]:
    """Write a batch: entities, relations, mentions, then the sources that mark it complete."""
    entities, relations = merge_extractions(extractions)
    entities_new = store.upsert_entities(entities)
    relations_new = store.upsert_relations(relations)
    mentions_new = store.upsert_mentions([m for e in extractions for m in e.mentions])
    sources_new = store.upsert_sources([e.source for e in extractions])
    return sources_new, entities_new, relations_new, mentions_new


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest(
    paths: Sequence[str | Path],
    store: GraphStore,
    *,
    domain: str = "general",
    fmt: str = "auto",
    text_column: str | None = None,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
    on_problem: Callable[[SourceError], None] | None = None,
    extractor=None,
    model_dir: str | Path | None = None,
) -> IngestReport:
    """Ingest files or folders into ``store`` with the ``domain`` pack; return what was done.

    Args:
        paths (list): files or folders (text, JSONL, CSV, image manifests, known data sets).
        store (GraphStore): where the graph is written.
        domain (str, optional): a built-in domain or a pack folder. (default: ``"general"``)
        fmt (str, optional): input format, or ``"auto"`` to detect it per path. (default: ``"auto"``)
        batch_size (int, optional): sources extracted and written together. (default: ``256``)
        on_problem (callable, optional): called with each bad input; the rest is still ingested.
        extractor (Extractor, optional): a ready extractor, to reuse a loaded pipeline.
        model_dir (str, optional): a model from ``kgmm train extraction`` whose entities and relations
            are added to the pack's (mapped by the pack's ``model_labels`` / ``model_relations``).
    """
    from kgmm.extract.pipeline import Extractor
    from kgmm.sources import count_records, read_sources

    extractor = extractor or Extractor(domain, model_dir=model_dir)
    report = IngestReport()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count_records(paths), unit="src", desc="ingest", disable=None, dynamic_ncols=True)
    stream = iter(read_sources(paths, fmt=fmt, text_column=text_column, limit=limit))
    while True:
        started = time.perf_counter()
        batch = list(itertools.islice(stream, batch_size))
        report.seconds_read += time.perf_counter() - started
        if not batch:
            break
        sources: dict[str, Source] = {}
        for item in batch:
            if isinstance(item, SourceError):
                report.problems.append(str(item))
                if on_problem:
                    on_problem(item)
            else:
                sources.setdefault(item.id, item)
        report.sources_read += sum(1 for item in batch if not isinstance(item, SourceError))

        started = time.perf_counter()
        known = store.known_sources(sources)
        new_sources = [s for sid, s in sources.items() if sid not in known]
        report.sources_known += len(sources) - len(new_sources)
        report.seconds_store += time.perf_counter() - started

        started = time.perf_counter()
        extractions = list(extractor.extract(new_sources))
        report.seconds_extract += time.perf_counter() - started

        started = time.perf_counter()
        sources_new, entities_new, relations_new, mentions_new = write_extractions(store, extractions)
        report.seconds_store += time.perf_counter() - started
        report.sources_new += sources_new
        report.entities_new += entities_new
        report.relations_new += relations_new
        report.mentions_new += mentions_new
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return report
