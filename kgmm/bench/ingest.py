"""``kgmm bench ingest``: documents per second of a full ingest, and one large file's memory and commits."""

from __future__ import annotations

import csv
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from kgmm.errors import KgmmError
from kgmm.utils import batched

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
                texts.extend(" ".join(pair) for pair in batched(sentences, 2))
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
    from kgmm.app.ingest import ingest
    from kgmm.extract.pipeline import Extractor
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


def write_large_text(path: Path, data_dir: Path, megabytes: float) -> int:
    """Write one plain-text file of about ``megabytes`` MB of clinical paragraphs (the benchmark corpus, cycled);
    return its size in bytes."""
    texts = build_medical_corpus(data_dir, 5000)
    target = int(megabytes * 1_000_000)
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        while written < target:
            for text in texts:
                chunk = text + "\n\n"
                handle.write(chunk)
                written += len(chunk.encode("utf-8"))
                if written >= target:
                    break
    return path.stat().st_size


def bench_large_file(data_dir: str | Path, *, megabytes: float = 50.0, domain: str = "general",
                     batch_size: int | None = None, max_seconds: float | None = None) -> dict:
    """Ingest one large text file with ``kgmm ingest`` in a child process, as a user would; return its peak
    resident memory (the kernel's high-water mark, VmHWM), when the first batch was committed, and the bytes
    committed over time. With ``max_seconds`` the ingest is stopped there with Ctrl-C (SIGINT), which also checks
    that the committed part survives.
    """
    import signal
    import subprocess
    import sys

    work = Path(tempfile.mkdtemp(prefix="kgmm-bench-large-"))
    try:
        text = work / "large.txt"
        size = write_large_text(text, Path(data_dir), megabytes)
        store = work / "store"
        command = [sys.executable, "-m", "kgmm", "ingest", str(text), "--store", str(store), "--domain", domain,
                   "--json"] + (["--batch-size", str(batch_size)] if batch_size else [])
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        peak_kb, timeline, stopped = 0, [], False
        while child.poll() is None:
            time.sleep(1.0)
            peak_kb = max(peak_kb, _peak_rss_kb(child.pid))
            elapsed = time.perf_counter() - started
            committed = _committed_bytes(store)
            if committed and (not timeline or committed != timeline[-1][1]):
                timeline.append((round(elapsed, 1), committed))
            if max_seconds is not None and elapsed > max_seconds and not stopped:
                child.send_signal(signal.SIGINT)
                stopped = True
        stdout, stderr = child.communicate()
        seconds = time.perf_counter() - started
        committed = _committed_bytes(store)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "file_bytes": size, "domain": domain, "batch_size": batch_size or "default", "exit_code": child.returncode,
        "stopped_after_s": max_seconds if stopped else None, "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1), "first_commit_s": timeline[0][0] if timeline else None,
        "bytes_committed": committed, "committed_bytes_per_s": round(committed / seconds, 1) if seconds else 0.0,
        "commits_seen": len(timeline), "timeline": timeline,
        "summary": next((line for line in stderr.splitlines() if line.startswith("interrupted:")), None)
        or (stdout.strip().splitlines() or [""])[-1][:300],
    }


def _peak_rss_kb(pid: int) -> int:
    """The peak resident set size of a running process (``VmHWM`` of ``/proc/PID/status``), 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _committed_bytes(store: Path) -> int:
    """UTF-8 bytes of the document texts stored so far (read-only: the ingest keeps its write lock)."""
    from kgmm.store import open_store

    if not (store / "graph.lbdb").exists():
        return 0
    try:
        with open_store(store, read_only=True) as reader:
            rows = reader.cypher("MATCH (s:Source) WHERE s.kind IS NOT NULL RETURN sum(size(s.text)) AS n")
    except KgmmError:
        return 0
    return int(rows[0]["n"] or 0)
