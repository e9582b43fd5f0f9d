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
