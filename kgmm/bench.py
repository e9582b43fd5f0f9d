"""Benchmarks measured by ``kgmm bench ...`` (never by timed tests)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from kgmm.errors import KgmmError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def build_medical_corpus(data_dir: Path, docs: int) -> list[str]:
    """Return ``docs`` short clinical/biomedical documents made from the shared data sets.

    BC5CDR abstracts are cut into paragraphs of two sentences; Symptom2Disease complaints and MedPix
    captions are used whole; the list is cycled if it is still short.
    """
    from kgmm.sources.bc5cdr import read_pubtator

    texts: list[str] = []
    for name in ("CDR_TrainingSet.PubTator.txt", "CDR_DevelopmentSet.PubTator.txt"):
        path = data_dir / "bc5cdr" / name
        if path.is_file():
            for doc in read_pubtator(path):
                sentences = _SENTENCE_END.split(doc.text)
                texts.extend(" ".join(sentences[i : i + 2]) for i in range(0, len(sentences), 2))
    complaints = data_dir / "symptom2disease" / "symptom2disease_train.csv"
    if complaints.is_file():
        with complaints.open(encoding="utf-8", newline="") as handle:
            texts.extend(row["text"] for row in csv.DictReader(handle) if row.get("text"))
    captions = data_dir / "medpix" / "descriptions_test.jsonl"
    if captions.is_file():
        for line in captions.read_text(encoding="utf-8").splitlines():
            caption = (json.loads(line).get("Description") or {}).get("Caption")
            if caption:
                texts.append(caption)
    if not texts:
        raise KgmmError(f"no benchmark texts found under {data_dir}; pass --data pointing at the shared data folder")
    while len(texts) < docs:
        texts.extend(texts[: docs - len(texts)])
    return texts[:docs]


def bench_ingest(data_dir: str | Path, *, domain: str = "medical", docs: int = 5000, store_dir: str | Path | None = None, seed: int = 0) -> dict:
    """Time spaCy alone and a full ingest over the same corpus; return throughput and time shares.

    The corpus is deterministic (``seed`` is recorded for the report; nothing here is random).
    """
    from kgmm.extract.pipeline import Extractor
    from kgmm.ingest import ingest
    from kgmm.store import open_store

    texts = build_medical_corpus(Path(data_dir), docs)
    extractor = Extractor(domain)
    work = Path(tempfile.mkdtemp(prefix="kgmm-bench-"))
    try:
        corpus = work / "corpus.jsonl"
        with corpus.open("w", encoding="utf-8") as handle:
            for index, text in enumerate(texts):
                handle.write(json.dumps({"id": index, "text": text}) + "\n")

        started = time.perf_counter()
        for _ in extractor.nlp.pipe(texts, batch_size=32):
            pass
        spacy_seconds = time.perf_counter() - started

        store_path = Path(store_dir) if store_dir else work / "store"
        with open_store(store_path) as store:
            started = time.perf_counter()
            report = ingest([corpus], store, domain=domain, extractor=extractor, progress=False)
            ingest_seconds = time.perf_counter() - started
            stats = store.stats()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    return {
        "documents": len(texts),
        "characters": sum(len(t) for t in texts),
        "spacy_alone_docs_per_s": round(len(texts) / spacy_seconds, 2),
        "ingest_docs_per_s": round(len(texts) / ingest_seconds, 2),
        "throughput_ratio": round(spacy_seconds / ingest_seconds, 3),
        "seconds_spacy_alone": round(spacy_seconds, 2),
        "seconds_ingest": round(ingest_seconds, 2),
        "seconds_extract": round(report.seconds_extract, 2),
        "seconds_store": round(report.seconds_store, 2),
        "seconds_read": round(report.seconds_read, 2),
        "store_share": round(report.seconds_store / ingest_seconds, 3),
        "extract_share": round(report.seconds_extract / ingest_seconds, 3),
        "entities": stats.entities,
        "relations": stats.relations,
        "mentions": stats.mentions,
        "seed": seed,
    }


def bench_startup(repeats: int = 5) -> dict:
    """Median wall time of ``import kgmm`` and ``kgmm --help`` in fresh interpreters."""
    import statistics
    import subprocess
    import sys

    def median_seconds(command: list[str]) -> float:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        return round(statistics.median(times), 3)

    baseline = median_seconds([sys.executable, "-c", "pass"])
    return {
        "python_startup_s": baseline,
        "import_kgmm_s": median_seconds([sys.executable, "-c", "import kgmm"]),
        "kgmm_help_s": median_seconds([sys.executable, "-m", "kgmm", "--help"]),
        "repeats": repeats,
    }
