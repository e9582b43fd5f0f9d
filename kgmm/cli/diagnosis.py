"""Diagnosis commands: ``kgmm diagnose``, ``kgmm train diagnosis``, ``kgmm eval diagnosis``, ``kgmm bench diagnose``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from kgmm.cli.output import JsonOption, console, emit, render_metrics
from kgmm.cli.qa import FUSIONS

MODEL_ENV = "KGMM_DIAGNOSIS_MODEL"
DATASETS = ("ddxplus", "symptom2disease", "fashion", "medpix", "jsonl")  # kgmm.sources.cases.DATASETS, without importing it
DatasetOption = typer.Option(..., "--dataset", "-d", help=f"Case format: {', '.join(DATASETS)}.")
KnowledgeOption = typer.Option(None, "--knowledge", help="Label -> finding graph: DDXPlus release_conditions.json, "
                               "a knowledge.json, hpo, or MedPix data_test.jsonl (read from its disease discussions); "
                               "without --model, rank from it alone (knowledge-only).")


def render_diagnoses(result: dict) -> None:
    out = console()
    for warning in result.get("warnings", []):
        out.print(f"warning: {warning}", markup=False, highlight=False)
    case = result["case"]
    for key in ("present", "absent"):
        if case[key]:
            out.print(f"{key}: " + "; ".join(item["name"] for item in case[key]), markup=False, highlight=False)
    if case["unknown"]:
        out.print(f"not in the model: {', '.join(case['unknown'])}", markup=False, highlight=False)
    if not result["diagnoses"] and result.get("reason"):
        out.print(f"no ranking: {result['reason']}", markup=False, highlight=False)
    for rank, entry in enumerate(result["diagnoses"], start=1):
        out.print(f"{rank}. [bold]{entry['label']}[/]  p={entry['probability']:.3f}", highlight=False)
        for key, sign in (("supports", "+"), ("against", "-")):
            for item in entry[key]:
                cited = f"  stated in {', '.join(item['sources'][:3])}" if item.get("sources") else ""
                out.print(f"     {sign} {item['name']}  ({item['relation']}, {item['weight']:.2f}){cited}", markup=False,
                          highlight=False)


def _model(model: Path | None, knowledge: Path | None, domain: str):
    from kgmm.tasks.diagnosis import open_diagnosis_model

    chosen = model or (Path(os.environ[MODEL_ENV]) if os.environ.get(MODEL_ENV) and knowledge is None else None)
    return open_diagnosis_model(chosen, knowledge, domain=domain)


def diagnose(
    text: str = typer.Option("", "--text", "-t", help="Free text: complaint, history, caption (negations count as absent)."),
    findings: str = typer.Option("", "--findings", "-f", help="Comma-separated findings present: ids, codes (E_53) "
                                 "or names."),
    absent: str = typer.Option("", "--absent", help="Comma-separated findings known absent."),
    image: Path | None = typer.Option(None, "--image", help="An image of the case (for models trained with images)."),
    model: Path | None = typer.Option(None, "--model", "-m", help=f"Model from `kgmm train diagnosis` (default ${MODEL_ENV})."),
    knowledge: Path | None = KnowledgeOption,
    store: str | None = typer.Option(None, "--store", "-s", help="Rank the conditions of your own graph (its "
                                     "Disease entities, by the findings it links to them), knowledge-only."),
    domain: str = typer.Option("medical", "--domain", help="Domain pack that reads --text (knowledge-only mode)."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Diagnoses to show."),
    age: float | None = typer.Option(None, "--age"),
    sex: str | None = typer.Option(None, "--sex", help="M or F."),
    rank_anyway: bool = typer.Option(False, "--rank-anyway", help="Rank even when nothing in the case is known to "
                                     "the model (the ranking is then the prior alone)."),
    as_json: bool = JsonOption,
) -> None:
    """Rank diagnoses for a case, each with the graph evidence for and against it."""
    from kgmm.app.diagnose import diagnose_case

    if store is not None:
        from kgmm.cli.output import open_existing_store
        from kgmm.tasks.diagnosis import open_diagnosis_model

        with open_existing_store(store) as graph_store:
            chosen = open_diagnosis_model(None, domain=domain, store=graph_store)
    else:
        chosen = _model(model, knowledge, domain)
    result = diagnose_case(chosen, text=text, findings=findings.split(","), absent=absent.split(","), image=image,
                           age=age, sex=sex, top_k=top_k, rank_anyway=rank_anyway)
    emit(result, as_json, render_diagnoses)


def train_diagnosis(
    dataset: str = DatasetOption,
    path: Path = typer.Option(..., "--path", "-p", help="The labelled cases file."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    knowledge: Path | None = typer.Option(None, "--knowledge", help="Label -> finding graph (default for ddxplus: "
                                          "release_conditions.json beside --path; otherwise built from the cases)."),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of each label's cases written to OUT/heldout/ and "
                                  "never trained on."),
    fusion: str = typer.Option("early-concat", "--fusion", help=f"Fusion of the modalities: {', '.join(FUSIONS)}."),
    no_graph: bool = typer.Option(False, "--no-graph", help="Train without the graph evidence (ablation)."),
    per_class: int | None = typer.Option(None, "--per-class", help="Train on at most this many cases per label."),
    target: str | None = typer.Option(None, "--target", help="fashion: the column to predict (articleType, usage, "
                                      "season, ...; default articleType)."),
    catalogue_per_type: int = typer.Option(60, "--catalogue-per-type", help="fashion: title-only rows per label "
                                           "from catalogue.csv beside --path added to training (0: none)."),
    init_from: Path | None = typer.Option(None, "--init-from", help="Start from a diagnosis model of this or another "
                                          "domain (its encoder projections and fusion layers): few-label adaptation."),
    domain: str | None = typer.Option(None, "--domain", help="Domain pack that reads the text (medical, retail, "
                                      "general or a pack folder; default by --dataset)."),
    epochs: int = typer.Option(200, "--epochs"),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress."),
    as_json: bool = JsonOption,
) -> None:
    """Train a diagnosis model (graph evidence + fusion of findings, text and images), calibrated."""
    from kgmm.tasks.diagnosis import train_diagnosis as run

    result = run(path, dataset, out, knowledge=knowledge, holdout=holdout, fusion=fusion, use_graph=not no_graph,
                 per_class=per_class, target=target, catalogue_per_type=catalogue_per_type, init_from=init_from,
                 domain=domain, epochs=epochs, seed=seed, progress=not quiet and not as_json)
    emit({"title": f"trained diagnosis model -> {out}", **result}, as_json, render_metrics)


def eval_diagnosis(
    dataset: str = DatasetOption,
    path: Path = typer.Option(..., "--path", "-p", help="Labelled cases (e.g. OUT/heldout/ of the training)."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Model from `kgmm train diagnosis`."),
    knowledge: Path | None = KnowledgeOption,
    domain: str = typer.Option("medical", "--domain", help="Domain pack that reads text (knowledge-only mode)."),
    as_json: bool = JsonOption,
) -> None:
    """Top-1/top-3 accuracy, macro-F1 and expected calibration error on labelled cases."""
    from kgmm.tasks.diagnosis import evaluate_diagnosis

    result = evaluate_diagnosis(_model(model, knowledge, domain), path, dataset)
    emit({"title": f"diagnosis on {path.name}", **result}, as_json, render_metrics)


def bench_diagnose(
    dataset: str = DatasetOption,
    path: Path = typer.Option(..., "--path", "-p", help="Cases to diagnose one at a time."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Model from `kgmm train diagnosis`."),
    knowledge: Path | None = KnowledgeOption,
    count: int = typer.Option(200, "--count", "-n"),
    as_json: bool = JsonOption,
) -> None:
    """Latency of `kgmm diagnose` on a warm model (p50/p95/p99, ms per case)."""
    from kgmm.bench.diagnosis import bench_diagnose as run
    from kgmm.sources.cases import read_cases

    chosen = _model(model, knowledge, "medical")
    result = run(chosen, read_cases(path, dataset, target=chosen.config.get("target")), count=count)
    emit({"title": f"diagnose latency ({model or knowledge})", **result}, as_json, render_metrics)


def bench_curve(
    dataset: str = DatasetOption,
    path: Path = typer.Option(..., "--path", "-p", help="Labelled cases (a fifth of each label is held out)."),
    out: Path = typer.Option(Path("diagnosis-curve"), "--out", "-o", help="Folder for the models, table and PNG."),
    adapt_from: Path | None = typer.Option(None, "--adapt-from", help="A diagnosis model of another domain: adds "
                                           "the adapted lines (--init-from)."),
    sizes: str = typer.Option("1,5,20,all", "--sizes", help="Labelled cases per label."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JsonOption,
) -> None:
    """Learning curve: held-out top-1 for 1, 5, 20 and all labelled cases per label, from scratch vs adapted,
    with vs without the graph; writes OUT/learning_curve.json and OUT/learning_curve.png."""
    from kgmm.bench import parse_sizes
    from kgmm.bench.diagnosis import learning_curve

    result = learning_curve(path, dataset, out, sizes=parse_sizes(sizes), adapt_from=adapt_from, seed=seed)
    if as_json:
        emit({"title": "learning curve", **result}, True, render_metrics)
        return
    from rich.table import Table

    table = Table(title=f"{dataset} learning curve ({result['heldout_cases']} held-out cases)")
    for column in ("per label", "start", "graph", "train", "top-1", "top-3", "macro-F1", "ECE"):
        table.add_column(column)
    for row in result["rows"]:
        table.add_row(str(row["per_class"]), row["start"], "yes" if row["graph"] else "no", str(row["train"]),
                      f"{row['top1']:.3f}", f"{row['top3']:.3f}", f"{row['macro_f1']:.3f}", f"{row['ece']:.3f}")
    console().print(table)
    console().print(f"plot: {result['plot']}", markup=False, highlight=False)


def bench_store(
    path: Path = typer.Option(Path("../shared/data/medpix/data_test.jsonl"), "--path", "-p",
                              help="MedPix cases (their disease discussions are ingested, their histories ranked)."),
    store: Path | None = typer.Option(None, "--store", help="Store folder to build (default: a temporary one)."),
    as_json: bool = JsonOption,
) -> None:
    """Diagnose from your own graph: ingest MedPix's disease discussions with `kgmm ingest`, rank every case with
    `kgmm diagnose --store`, and compare top-1/top-3 with the file's own reader."""
    from kgmm.bench.diagnosis import store_ranking

    emit({"title": f"diagnose --store on {path}", **store_ranking(path, store=store)}, as_json, render_metrics)


def register(app: typer.Typer, train_app: typer.Typer, eval_app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``diagnose``, ``train diagnosis``, ``eval diagnosis``, ``bench diagnose``, ``bench diagnosis-curve``
    and ``bench diagnose-store``."""
    app.command("diagnose")(diagnose)
    train_app.command("diagnosis")(train_diagnosis)
    eval_app.command("diagnosis")(eval_diagnosis)
    bench_app.command("diagnose")(bench_diagnose)
    bench_app.command("diagnosis-curve")(bench_curve)
    bench_app.command("diagnose-store")(bench_store)
