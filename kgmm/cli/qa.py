"""Question answering commands: ``kgmm ask``, ``kgmm train qa``, ``kgmm eval qa`` and ``kgmm bench qa``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from kgmm.cli.output import DatabaseOption, JsonOption, StoreOption, UserOption, console, emit, render_metrics
from kgmm.tasks.qa_synthesis import DEFAULT_QUESTIONS

MODEL_ENV = "KGMM_QA_MODEL"
FUSIONS = ("early-concat", "early-gated", "late", "hybrid", "cross-attention")  # kgmm.nn.fusion, without torch


def render_answers(result: dict) -> None:
    out = console()
    for warning in result.get("warnings", []):
        out.print(f"warning: {warning}", markup=False, highlight=False)
    linked = "; ".join(f"{item['mention']} -> {', '.join(item['entities']) or 'not in the graph'}"
                       for item in result["linked"])
    if linked:
        out.print(f"linked: {linked}", markup=False, highlight=False)
    if not result["answers"]:
        out.print(f"no answer: {result['reason']}", markup=False, highlight=False)
        return
    for rank, answer in enumerate(result["answers"], start=1):
        out.print(f"{rank}. [bold]{answer['name']}[/]  score {answer['score']:.3f}  ({answer['entity']})",
                  highlight=False)
        for fact in answer["path"]:
            out.print(f"     {fact['head_name']} -{fact['relation']}-> {fact['tail_name']}", markup=False,
                      highlight=False)
            titles = fact.get("source_titles") or fact["sources"]
            for title, sentence in zip(titles, fact["sentences"] or [""] * len(titles), strict=False):
                text = sentence if len(sentence) <= 110 else sentence[:107] + "..."
                out.print(f"         [{title}] {text}", markup=False, highlight=False)


def _model_dir(model: Path | None) -> Path:
    from kgmm.errors import ValidationError

    chosen = model or (Path(os.environ[MODEL_ENV]) if os.environ.get(MODEL_ENV) else None)
    if chosen is None:
        raise ValidationError("no QA model given for --kb (--model or $KGMM_QA_MODEL); train one from the KB alone "
                              "with `kgmm train qa --kb kb.txt --out models/qa`, or ingest it into a store and "
                              "ask with --store (see README: Question answering)")
    if not chosen.exists():
        raise ValidationError(f"no QA model at {chosen}; train one with `kgmm train qa --kb kb.txt --out {chosen}`")
    return chosen


def _one_graph(kb: Path | None, store: str | None) -> None:
    from kgmm.errors import ValidationError

    if (kb is None) == (store is None):
        raise ValidationError("give the graph as either --kb FILE (a triples file) or --store LOCATION, not "
                              + ("both" if kb is not None else "neither"))


def ask(
    question: str = typer.Argument(..., help="The question; put the entity it is about in [brackets] to skip "
                                   "linking; - reads it from standard input (a long question)."),
    model: Path | None = typer.Option(None, "--model", "-m", help=f"QA model from `kgmm train qa` (default ${MODEL_ENV})."),
    store: str | None = StoreOption,
    kb: Path | None = typer.Option(None, "--kb", help="Answer over a triples file instead of a store."),
    image: Path | None = typer.Option(None, "--image", help="A photo the question is about."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Answers to show."),
    user: str | None = UserOption,
    database: str | None = DatabaseOption,
    as_json: bool = JsonOption,
) -> None:
    """Answer a question from the graph, with the chain of facts behind each answer and their sources. With no
    --model, a store answers with its own QA model, trained from its graph the first time (no labelled questions)."""
    import sys

    from kgmm.cli.output import open_existing_store

    if question == "-":
        question = sys.stdin.read()
    chosen = model or (Path(os.environ[MODEL_ENV]) if os.environ.get(MODEL_ENV) else None)
    if kb is not None or chosen is not None:
        from kgmm.tasks.qa import QAModel, open_qa_graph

        qa_model = QAModel(_model_dir(chosen))
        if kb is not None:
            result = qa_model.ask(question, open_qa_graph(qa_model, kb=kb), top_k=top_k, image=image)
        else:
            with open_existing_store(store, user, database) as graph_store:
                result = qa_model.ask(question, open_qa_graph(qa_model, store=graph_store), top_k=top_k,
                                      image=image)
        emit(result, as_json, render_answers)
        return
    from kgmm.app.ask import ask as ask_store

    with open_existing_store(store, user, database) as graph_store:
        result = ask_store(graph_store, question, top_k=top_k, image=image, progress=not as_json,
                           notice=lambda line: print(line, file=sys.stderr, flush=True))
    emit(result, as_json, render_answers)


def train_qa(
    kb: Path | None = typer.Option(None, "--kb", help="The KB: head|relation|tail (or TAB-separated) lines."),
    store: str | None = typer.Option(None, "--store", "-s", help="Train over a store's graph instead of --kb."),
    train: list[Path] = typer.Option([], "--train", "-t", help="Question files (question with [topic]<TAB>"
                                     "answer1|answer2); repeatable, any mix of hop counts. None: the model trains "
                                     "on questions synthesized from the graph alone."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    dev: list[Path] = typer.Option([], "--dev", help="Question files to choose the best epoch on (default: 5% of "
                                   "the training questions)."),
    holdout: float = typer.Option(0.0, "--holdout", help="Share of each --train file kept out of training and "
                                  "written to OUT/heldout/ for `kgmm eval qa`."),
    fusion: str = typer.Option("early-concat", "--fusion", help=f"How the question is read: {', '.join(FUSIONS)}."),
    steps: int = typer.Option(3, "--steps", help="Reasoning steps (the most hops of an answer)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Most epochs (default 12 with --train, 6 on "
                                      "synthesized questions alone; stops early when validation stops improving)."),
    synthesize: bool | None = typer.Option(None, "--synthesize/--no-synthesize", help="Add questions made from "
                                           "the graph (default: only without --train; with it, both are mixed)."),
    questions: int = typer.Option(DEFAULT_QUESTIONS, "--questions", help="How many questions to synthesize."),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress."),
    as_json: bool = JsonOption,
) -> None:
    """Train one question-answering model for 1-, 2- and 3-hop questions over a KB or a store (with no --train,
    on questions made from the graph itself)."""
    from kgmm.cli.output import open_existing_store
    from kgmm.tasks.qa import train_qa as run

    options = {"dev": dev, "holdout": holdout, "fusion": fusion, "steps": steps, "epochs": epochs, "seed": seed,
               "synthesize": synthesize, "synthetic_questions": questions, "progress": not quiet and not as_json}
    _one_graph(kb, store)
    if store is not None:
        with open_existing_store(store) as graph_store:
            result = run(None, train, out, store=graph_store, **options)
    else:
        result = run(kb, train, out, **options)
    emit({"title": f"trained QA model -> {out}", **result}, as_json, render_metrics)


def eval_qa(
    model: Path = typer.Option(..., "--model", "-m", help="QA model from `kgmm train qa`."),
    kb: Path | None = typer.Option(None, "--kb", help="The KB the questions are about."),
    store: str | None = typer.Option(None, "--store", "-s", help="Evaluate over a store's graph instead of --kb."),
    questions: Path = typer.Option(..., "--questions", "-q", help="Question file with answers."),
    as_json: bool = JsonOption,
) -> None:
    """Hits@1 and answer-set F1, overall and on questions whose answers the KB can reach."""
    from kgmm.cli.output import open_existing_store
    from kgmm.tasks.qa import evaluate_qa

    _one_graph(kb, store)
    if store is not None:
        with open_existing_store(store) as graph_store:
            result = evaluate_qa(_model_dir(model), None, questions, store=graph_store)
    else:
        result = evaluate_qa(_model_dir(model), kb, questions)
    emit({"title": f"{model} on {questions.name}", **result}, as_json, render_metrics)


def bench_qa(
    model: Path = typer.Option(..., "--model", "-m", help="QA model from `kgmm train qa`."),
    kb: Path = typer.Option(Path("../shared/data/metaqa/kb.txt"), "--kb", help="The KB (default: MetaQA's)."),
    questions: Path = typer.Option(..., "--questions", "-q", help="Questions to ask (e.g. a held-out file)."),
    count: int = typer.Option(300, "--count", "-n", help="Questions asked one at a time for the latency."),
    as_json: bool = JsonOption,
) -> None:
    """Latency of `kgmm ask` on a warm model (p50/p99) and batched evaluation throughput."""
    from kgmm.bench.qa import bench_qa as run

    result = run(_model_dir(model), kb, questions, count=count)
    emit({"title": f"QA benchmark ({model})", **result}, as_json, render_metrics)


def bench_qa_curve(
    kb: Path = typer.Option(Path("../shared/data/metaqa/kb.txt"), "--kb", help="The KB (default: MetaQA's)."),
    questions: list[Path] = typer.Option(..., "--questions", "-q", help="Labelled question files, one per hop "
                                         "count say (repeatable); each is split into a test set and a pool."),
    out: Path = typer.Option(Path("qa-curve"), "--out", "-o", help="Folder for the models, qa_curve.json and .png."),
    sizes: str = typer.Option("0,10,100,all", "--sizes", help="Labelled questions per file on top of the "
                              "synthesized ones (0: zero-label)."),
    test_share: float = typer.Option(0.5, "--test-share", help="Share of each file held out as its test set."),
    synthetic: int = typer.Option(DEFAULT_QUESTIONS, "--synthetic", help="Questions synthesized from the graph per model."),
    epochs: int = typer.Option(6, "--epochs"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JsonOption,
) -> None:
    """Learning curve of QA: held-out reachable Hits@1 with 0, 10, 100 and all labelled questions per file, on top
    of the questions made from the graph; writes OUT/qa_curve.json and OUT/qa_curve.png."""
    from kgmm.bench import parse_sizes
    from kgmm.bench.qa_curve import qa_curve

    result = qa_curve(kb, questions, out, sizes=parse_sizes(sizes, minimum=0, unit="labelled questions per file"),
                      test_share=test_share, synthetic_questions=synthetic, epochs=epochs, seed=seed,
                      progress=not as_json)
    emit({"title": "QA learning curve", **result}, as_json, render_metrics)


def register(app: typer.Typer, train_app: typer.Typer, eval_app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add ``ask``, ``train qa``, ``eval qa``, ``bench qa`` and ``bench qa-curve``."""
    app.command("ask")(ask)
    train_app.command("qa")(train_qa)
    eval_app.command("qa")(eval_qa)
    bench_app.command("qa")(bench_qa)
    bench_app.command("qa-curve")(bench_qa_curve)
