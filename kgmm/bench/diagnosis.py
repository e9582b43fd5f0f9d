"""``kgmm bench diagnosis-curve``: a learning curve for diagnosis, from scratch versus adapted, with the graph
versus without it.

For each number of labelled training cases per label (1, 5, 20 and all by default), four models are trained
on the same cases and scored on the same held-out cases (``--holdout`` of each label, fixed by the seed):
from scratch with the graph, from scratch without it, and, given ``--adapt-from`` (a diagnosis model of
another domain or task), the same two started from that model's shared layers (:func:`train_diagnosis`'s
``init_from``). Writes a table (JSON) and a plot (PNG). Only the cases of the file count as labelled cases:
fashion's catalogue rows are left out (``catalogue_per_type=0``), so "all" is the photographed products alone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kgmm.errors import ValidationError
from kgmm.utils import percentile

if TYPE_CHECKING:
    from kgmm.sources.cases import Case
    from kgmm.tasks.diagnosis import DiagnosisModel

DEFAULT_SIZES = (1, 5, 20, None)  # None: every training case


def learning_curve(path: str | Path, dataset: str, out: str | Path, *, sizes: Sequence[int | None] = DEFAULT_SIZES,
                   adapt_from: str | Path | None = None, holdout: float = 0.2, seed: int = 0,
                   epochs: int = 200, **options) -> dict:
    """Train and score the curve's models under ``out``; return ``{"rows": [...], "plot", ...}``.

    Each row: ``{"per_class", "start" (scratch | adapted), "graph" (bool), "train", "top1", "top3", "macro_f1",
    "ece", "seconds"}``.
    """
    from kgmm.tasks.diagnosis import DiagnosisModel, evaluate_diagnosis, train_diagnosis

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    starts = [("scratch", None)] + ([("adapted", adapt_from)] if adapt_from is not None else [])
    rows = []
    heldout = None
    for size in sizes:
        for start, init_from in starts:
            for graph in (True, False):
                name = f"{start}-{'graph' if graph else 'nograph'}-{size or 'all'}"
                started = time.perf_counter()
                summary = train_diagnosis(path, dataset, out / "models" / name, holdout=holdout, seed=seed,
                                          per_class=size, use_graph=graph, init_from=init_from, epochs=epochs,
                                          progress=False, **{"catalogue_per_type": 0, **options})
                heldout = summary["heldout_file"]
                if heldout is None:
                    raise ValidationError("a learning curve needs held-out cases: use --holdout > 0")
                metrics = evaluate_diagnosis(DiagnosisModel.load(out / "models" / name), heldout, dataset)
                rows.append({"per_class": size or "all", "start": start, "graph": graph, "train": summary["train"],
                             **{k: metrics[k] for k in ("top1", "top3", "macro_f1", "ece")},
                             "seconds": round(time.perf_counter() - started, 1)})
    result = {"dataset": dataset, "path": str(path), "heldout_file": heldout, "heldout_cases":
              evaluate_cases(heldout, dataset) if heldout else 0, "adapt_from": str(adapt_from) if adapt_from else None,
              "seed": seed, "rows": rows}
    result["plot"] = str(plot_curve(rows, out / "learning_curve.png", title=f"{dataset}: held-out top-1"))
    (out / "learning_curve.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def evaluate_cases(path: str | Path, dataset: str) -> int:
    from kgmm.sources.cases import read_cases

    return sum(1 for case in read_cases(path, dataset) if case.label)


def plot_curve(rows: Sequence[dict], out_png: str | Path, *, title: str = "") -> Path:
    """Top-1 against labelled cases per label, one line per (start, graph); ``all`` plotted last."""
    from kgmm.bench import plot_lines

    sizes = list(dict.fromkeys(row["per_class"] for row in rows))
    lines = {}
    for start in dict.fromkeys(row["start"] for row in rows):
        for graph in (True, False):
            line = [row for row in rows if row["start"] == start and row["graph"] == graph]
            if line:
                lines[f"{start}, {'with' if graph else 'without'} graph"] = (
                    [sizes.index(row["per_class"]) for row in line], [row["top1"] for row in line],
                    "-" if graph else "--")
    return plot_lines(lines, [str(size) for size in sizes], out_png, xlabel="labelled training cases per label",
                      ylabel="held-out top-1", title=title)


__all__ = ["DEFAULT_SIZES", "learning_curve", "plot_curve"]


def bench_diagnose(model: DiagnosisModel, cases: Sequence[Case], *, count: int = 200) -> dict:
    """Warm ``diagnose`` latency (ms) per case: p50/p95/p99 over up to ``count`` cases."""
    if not cases:
        raise ValidationError("no case to time")
    model.diagnose(cases[0])
    times = []
    for case in list(cases)[:count]:
        started = time.perf_counter()
        model.diagnose(case)
        times.append((time.perf_counter() - started) * 1000)
    return {"cases": len(times), **{f"p{round(q * 100)}_ms": round(percentile(times, q), 2) for q in (0.5, 0.95, 0.99)}}


def store_ranking(path: str | Path, *, store: str | Path | None = None, domain: str = "medical",
                  top_k: int = 3) -> dict:
    """Diagnose from a graph a user built: ingest MedPix's disease discussions (``{"title", "text"}`` records,
    the way a user would write them) with ``kgmm ingest`` into a store, rank every case from its history, exam
    and captions with the store's knowledge-only model (``kgmm diagnose --store``), and compare with the file's
    own reader (``--knowledge`` the cases file).

    A case's label counts as found when the store's search (:meth:`GraphStore.find_entities`, as ``kgmm search``)
    resolves it to one of the ranked conditions whose words are all in the label ("Massive pulmonary embolism" ->
    "Pulmonary embolism") and that condition is ranked first (``top1``) or in the first ``top_k``; a label the
    store cannot resolve is a miss.

    Args:
        path (str or Path): a MedPix cases file (``data_test.jsonl``; its descriptions file beside it).
        store (str or Path, optional): the store folder to build (default: a temporary one, removed after).
        domain (str, optional): the domain pack ingest and diagnose use (default ``medical``).
        top_k (int, optional): the cut of ``top3`` (default 3).
    """
    import tempfile

    from kgmm.app.ingest import ingest
    from kgmm.sources.cases import medpix_topics, read_cases
    from kgmm.store import open_store
    from kgmm.tasks.diagnosis import evaluate_diagnosis, open_diagnosis_model

    cases = [case for case in read_cases(path, "medpix") if case.label]
    if not cases:
        raise ValidationError(f"{path}: no labelled case to rank")
    with tempfile.TemporaryDirectory(prefix="kgmm-medpix-") as scratch:
        documents = Path(scratch) / "discussions.jsonl"
        documents.write_text("".join(json.dumps({"title": title, "text": text}) + "\n"
                                     for title, text in medpix_topics(path).items()), encoding="utf-8")
        started = time.perf_counter()
        with open_store(store or Path(scratch) / "store") as graph:
            report = ingest([documents], graph, domain=domain, progress=False)
            ingest_s = time.perf_counter() - started
            model = open_diagnosis_model(None, store=graph, domain=domain)
            labels = set(model.labels)
            gold = {case.id: _resolved(graph, case.label, labels) for case in cases}
        ranked = {case.id: [d["label"] for d in model.diagnose(case, top_k=top_k)["diagnoses"]] for case in cases}
    reference = evaluate_diagnosis(open_diagnosis_model(None, path, domain), path, "medpix")
    hits = [gold[c.id] is not None and ranked[c.id][:1] == [gold[c.id]] for c in cases]
    near = [gold[c.id] is not None and gold[c.id] in ranked[c.id] for c in cases]
    return {"cases": len(cases), "documents": report.sources_read, "conditions": len(labels),
            "labels_resolved": sum(g is not None for g in gold.values()),
            "top1": round(sum(hits) / len(cases), 4), f"top{top_k}": round(sum(near) / len(cases), 4),
            "file_reader_top1": reference["top1"], f"file_reader_top{top_k}": reference.get(f"top{top_k}"),
            "ingest_s": round(ingest_s, 1)}


def _resolved(graph, label: str, conditions: set[str]) -> str | None:
    """The ranked condition a case's label names: the store's best match whose words are all in the label."""
    from kgmm.schema import normalize_name
    from kgmm.tasks.diagnosis import title_names

    title = normalize_name(label)
    return next((m.entity.name for m in graph.find_entities(label, limit=10)
                 if m.entity.name in conditions and title_names(title, m.entity.name)), None)
