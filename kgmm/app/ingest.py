"""Ingest: read sources, extract with a domain pack, write to a graph store in idempotent batches.

Sources already in the store are skipped (or, with ``reextract``, their extraction is taken back and done again),
and each batch writes its sources last, so an ingest that was interrupted can be run again and ends in the same
graph as one that was not. A batch holds at most ``batch_size`` sources and ``MAX_BATCH_CHARS`` characters of
text, so memory stays bounded however large a file is, and every batch is committed as soon as it is written.

    plan = plan_ingest(paths, domain="medical")       # checks the inputs before any store is opened
    with open_store("my-graph") as store:
        report = plan.run(store)
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kgmm.errors import SourceError
from kgmm.schema import Extraction, Source
from kgmm.store.base import GraphStore

DEFAULT_BATCH_SIZE = 256
# A batch also ends once its texts reach this many characters: a 100,000-character part of a long file is as much
# work (and memory in spaCy) as a few hundred notes.
MAX_BATCH_CHARS = 400_000

ProblemHandler = Callable[[SourceError], None]


@dataclass
class IngestReport:
    """What an ingest did, with the time spent reading, extracting and writing.

    ``other_domains`` counts the sources already stored that were extracted with another domain pack and were left
    as they are (``reextract`` applies the new pack to them); ``bytes_read`` of ``bytes_total`` input bytes.
    """

    domain: str = ""
    sources_read: int = 0
    sources_new: int = 0
    sources_known: int = 0
    sources_reextracted: int = 0
    entities_new: int = 0
    relations_new: int = 0
    mentions_new: int = 0
    problems: list[str] = field(default_factory=list)
    other_domains: dict[str, int] = field(default_factory=dict)
    bytes_total: int = 0
    bytes_read: int = 0
    seconds_read: float = 0.0
    seconds_extract: float = 0.0
    seconds_store: float = 0.0
    image_links: dict | None = None  # what linking the uncaptioned images did, when an alignment model was given

    @property
    def seconds_total(self) -> float:
        return self.seconds_read + self.seconds_extract + self.seconds_store

    def to_dict(self) -> dict:
        data = asdict(self)
        data["seconds_total"] = round(self.seconds_total, 3)
        if self.image_links is None:
            del data["image_links"]
        return data

    def summary(self, store_uri: str) -> str:
        """One line: what reached ``store_uri``."""
        reextracted = f", {self.sources_reextracted:,} extracted again" if self.sources_reextracted else ""
        return (
            f"{self.sources_new:,} new source(s) ({self.sources_known:,} already stored{reextracted}) in {store_uri}: "
            f"+{self.entities_new:,} entities, +{self.relations_new:,} relations, +{self.mentions_new:,} mentions"
        )


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest: every batch before the current one is committed; ``report`` says what."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__("ingest interrupted")
        self.report = report


def write_extractions(store: GraphStore, extractions: Sequence[Extraction], *, domain: str = "") -> tuple[int, int, int, int]:
    """Write a batch: entities, relations, mentions, then the sources that mark it complete.

    The store folds the batch's repeated entity ids and relation keys by its merge rules (``store.records``),
    the same rules that merge them with what it holds already.
    """
    entities_new = store.upsert_entities([entity for e in extractions for entity in e.entities])
    relations_new = store.upsert_relations([relation for e in extractions for relation in e.relations])
    mentions_new = store.upsert_mentions([m for e in extractions for m in e.mentions])
    sources_new = store.upsert_sources([e.source for e in extractions], domain=domain)
    return sources_new, entities_new, relations_new, mentions_new


def batches(items: Iterable, size: int, max_chars: int | None = None) -> Iterator[list]:
    """Group ``items`` in lists of at most ``size``, ending a list early once its sources' texts reach ``max_chars``
    (default ``MAX_BATCH_CHARS``)."""
    max_chars = max_chars or MAX_BATCH_CHARS
    batch: list = []
    chars = 0
    for item in items:
        batch.append(item)
        chars += len(item.text) if isinstance(item, Source) else 0
        if len(batch) >= size or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


@dataclass
class IngestPlan:
    """Inputs checked and an extractor loaded, ready to run into a store (see :func:`plan_ingest`)."""

    items: Iterator[Source | SourceError]
    extractor: object
    files: dict[str, int]
    problems: list[str]
    batch_size: int = DEFAULT_BATCH_SIZE
    on_problem: ProblemHandler | None = None
    align_model: Path | None = None

    def run(self, store: GraphStore, *, progress: bool = True, reextract: bool = False) -> IngestReport:
        """Extract and write the inputs into ``store`` (see :func:`ingest_items`), then, with an alignment model,
        link the images stored without a caption to their nearest entities."""
        report = IngestReport(problems=list(self.problems), bytes_total=sum(self.files.values()))
        ingest_items(self.items, store, extractor=self.extractor, batch_size=self.batch_size,
                     on_problem=self.on_problem, reextract=reextract, report=report,
                     progress=_ByteProgress(self.files, report) if progress else None)
        if self.align_model is not None:
            from kgmm.tasks.crossmodal import link_uncaptioned_images

            report.image_links = link_uncaptioned_images(store, model=self.align_model)
        return report


def plan_ingest(
    paths: Sequence[str | Path],
    *,
    domain: str = "general",
    fmt: str = "auto",
    text_column: str | None = None,
    limit: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_problem: ProblemHandler | None = None,
    extractor=None,
    model_dir: str | Path | None = None,
    align_model: str | Path | None = None,
) -> IngestPlan:
    """Check the inputs, the alignment model and load the extractor, before any store is touched.

    ``align_model`` (default ``$KGMM_ALIGN_MODEL`` when set): a model from ``kgmm train align``; the run then
    links images without a caption to their nearest entities (provenance "retrieved").

    Raises:
        SourceError: ``fmt`` is unknown, or none of ``paths`` holds a readable source (each problem went to
            ``on_problem`` first).
        DomainError: ``domain`` is not a pack.
    """
    from kgmm.sources import FORMATS, ReadOptions, file_sizes, read_inputs, walk_inputs
    from kgmm.tasks.crossmodal import ALIGN_MODEL_ENV, resolve_align_model

    linker = resolve_align_model(align_model) if align_model is not None or os.environ.get(ALIGN_MODEL_ENV) else None
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if int(batch_size) < 1:
        raise SourceError(f"--batch-size must be at least 1, got {batch_size}")
    if extractor is None:
        from kgmm.domains import load_domain

        load_domain(domain)  # an unknown pack fails here, before the inputs are read
    found = list(walk_inputs(paths, fmt=fmt))  # walked once: the progress bar's sizes and the reading share it
    stream = iter(read_inputs(found, ReadOptions(text_column=text_column), limit=limit))
    problems: list[str] = []
    first: Source | None = None
    for item in stream:
        if isinstance(item, Source):
            first = item
            break
        problems.append(str(item))
        if on_problem:
            on_problem(item)
    if first is None:
        shown = ", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        raise SourceError(f"nothing to ingest: no readable source in {shown or 'no input'} "
                          f"({len(problems)} problem(s){', see the warnings above' if problems else ''}); "
                          "nothing was written")
    if extractor is None:
        from kgmm.extract.pipeline import Extractor

        model = None
        if model_dir is not None:
            from kgmm.tasks.extraction import load_extraction_model

            model = load_extraction_model(model_dir)
        extractor = Extractor(domain, model=model, model_source=f"the model in {model_dir}")
    return IngestPlan(itertools.chain([first], stream), extractor, file_sizes(found), problems,
                      batch_size=int(batch_size), on_problem=on_problem, align_model=linker)


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
    on_problem: ProblemHandler | None = None,
    extractor=None,
    model_dir: str | Path | None = None,
    reextract: bool = False,
) -> IngestReport:
    """Ingest files or folders into ``store`` with the ``domain`` pack; return what was done.

    Args:
        paths (list): files or folders (text, JSONL, CSV, image manifests, known data sets).
        store (GraphStore): where the graph is written.
        domain (str, optional): a built-in domain or a pack folder. (default: ``"general"``)
        fmt (str, optional): input format, or ``"auto"`` to detect it per path. (default: ``"auto"``)
        batch_size (int, optional): most sources extracted and written together (a batch also ends at
            ``MAX_BATCH_CHARS`` characters). (default: ``256``)
        progress (bool, optional): show a progress bar (bytes and sources) on the terminal. (default: :obj:`True`)
        on_problem (callable, optional): called with each bad input; the rest is still ingested.
        extractor (Extractor, optional): a ready extractor, to reuse a loaded pipeline.
        model_dir (str, optional): a model from ``kgmm train extraction`` whose entities and relations
            are added to the pack's (mapped by the pack's ``model_labels`` / ``model_relations``).
        reextract (bool, optional): extract sources already stored again: what their earlier extraction added is
            taken back first (:meth:`GraphStore.retract_sources`), so another pack replaces it. (default: :obj:`False`)

    Raises:
        SourceError: nothing in ``paths`` could be read (the store is left untouched).
        IngestInterrupted: Ctrl-C; the batches before the current one are committed.
    """
    plan = plan_ingest(paths, domain=domain, fmt=fmt, text_column=text_column, limit=limit, batch_size=batch_size,
                       on_problem=on_problem, extractor=extractor, model_dir=model_dir)
    return plan.run(store, progress=progress, reextract=reextract)


def ingest_items(
    items: Iterable[Source | SourceError],
    store: GraphStore,
    *,
    extractor,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_problem: ProblemHandler | None = None,
    reextract: bool = False,
    report: IngestReport | None = None,
    progress: _ByteProgress | None = None,
) -> IngestReport:
    """Extract ``items`` (sources, and problems to report) with ``extractor`` and write them into ``store`` batch by
    batch; the core loop of :func:`ingest` and :func:`repair`."""
    report = report or IngestReport()
    report.domain = extractor.pack.name
    groups = batches(items, batch_size)
    try:
        while True:
            started = time.perf_counter()
            batch = next(groups, None)
            report.seconds_read += time.perf_counter() - started
            if batch is None:
                break
            _ingest_batch(batch, store, extractor, report, on_problem=on_problem, reextract=reextract)
            store.release_memory()  # bounded memory over a long input (LadybugDB grows with each transaction)
            if progress is not None:
                progress.advance(batch)
    except KeyboardInterrupt as e:
        raise IngestInterrupted(report) from e
    finally:
        if progress is not None:
            progress.close()
    return report


def _ingest_batch(batch: list, store: GraphStore, extractor, report: IngestReport, *,
                  on_problem: ProblemHandler | None, reextract: bool) -> None:
    sources: dict[str, Source] = {}
    for item in batch:
        if isinstance(item, SourceError):
            report.problems.append(str(item))
            if on_problem:
                on_problem(item)
        else:
            sources.setdefault(item.id, item)
            report.sources_read += 1
            report.bytes_read += len(item.text.encode("utf-8", errors="replace"))
    domain = extractor.pack.name
    started = time.perf_counter()
    known = store.source_domains(sources)
    report.sources_known += len(known)
    if reextract and known:
        store.retract_sources(known)
        report.sources_reextracted += len(known)
        todo = list(sources.values())
    else:
        for other in Counter(stored for stored in known.values() if stored and stored != domain).items():
            report.other_domains[other[0]] = report.other_domains.get(other[0], 0) + other[1]
        todo = [source for source_id, source in sources.items() if source_id not in known]
    report.seconds_store += time.perf_counter() - started

    started = time.perf_counter()
    extractions = list(extractor.extract(todo))
    report.seconds_extract += time.perf_counter() - started

    started = time.perf_counter()
    sources_new, entities_new, relations_new, mentions_new = write_extractions(store, extractions, domain=domain)
    report.seconds_store += time.perf_counter() - started
    report.sources_new += sources_new - (len(known) if reextract else 0)
    report.entities_new += entities_new
    report.relations_new += relations_new
    report.mentions_new += mentions_new


def repair(store: GraphStore, *, domain: str | None = None, every_source: bool = False, progress: bool = True,
           on_problem: ProblemHandler | None = None) -> IngestReport:
    """Extract again, from the text the store keeps, the sources whose entities are gone (deleted by hand, say), or
    with ``every_source`` all of them; each with the pack it was extracted with, or ``domain`` when given.

    Raises:
        SourceError: a source to repair has no recorded pack (stored by an earlier kgmm) and no ``domain`` is given.
    """
    from kgmm.extract.pipeline import Extractor

    sources = list(store.iter_sources()) if every_source else store.sources_without_mentions()
    stored = store.source_domains(source.id for source in sources)
    groups: dict[str, list[Source]] = {}
    for source in sources:
        pack = domain or stored.get(source.id) or ""
        groups.setdefault(pack, []).append(source)
    if "" in groups:
        raise SourceError(f"{len(groups['']):,} source(s) to extract again have no recorded domain pack (stored by an "
                          "earlier kgmm); pass --domain to choose one")
    report = IngestReport()
    for pack, group in sorted(groups.items()):
        files = {"stored sources": sum(len(source.text.encode("utf-8")) for source in group)}
        report.bytes_total += files["stored sources"]
        ingest_items(group, store, extractor=Extractor(pack), on_problem=on_problem, reextract=True, report=report,
                     progress=_ByteProgress(files, report) if progress else None)
    report.domain = domain or ",".join(sorted(groups))
    return report


class _ByteProgress:
    """A rich progress bar of the input bytes read and the sources written (on a terminal only)."""

    def __init__(self, files: dict[str, int], report: IngestReport) -> None:
        import sys

        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.report = report
        self.files = files
        self.done: dict[str, int] = {}
        self.progress = Progress(
            TextColumn("ingest"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[sources]} sources"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=Console(file=sys.stderr), transient=True,
            disable=not sys.stderr.isatty(),
        )
        self.task = self.progress.add_task("ingest", total=sum(files.values()) or None, sources="0")
        self.progress.start()

    def advance(self, batch: list) -> None:
        """Count a written batch: each source's text in the file its origin names (at most that file's size)."""
        for item in batch:
            if isinstance(item, Source):
                name = _file_of(item.origin, self.files)
                if name is not None:
                    self.done[name] = min(self.files[name], self.done.get(name, 0) + len(item.text.encode("utf-8")))
        completed = sum(self.done.values())
        self.progress.update(self.task, completed=completed, sources=f"{self.report.sources_read:,}")

    def close(self) -> None:
        self.progress.stop()


def _file_of(origin: str, files: dict[str, int]) -> str | None:
    """Return the input file a source's origin (``path``, ``path#row``, ``path:line``, ``path#part-2``) is in."""
    if origin in files:
        return origin
    for separator in ("#", ":"):
        head = origin.rsplit(separator, 1)[0]
        while head and head not in files and separator in head:
            head = head.rsplit(separator, 1)[0]
        if head in files:
            return head
    return next(iter(files)) if len(files) == 1 else None
