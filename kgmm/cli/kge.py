"""Knowledge-graph embedding commands: ``kgmm train kge``, ``kgmm eval kge``, ``kgmm predict links``."""

from __future__ import annotations

from pathlib import Path

import typer

from kgmm.cli.output import JsonOption, console, emit, render_metrics

KGE_MODELS = ("complex", "distmult", "rotate", "transe", "rgcn")  # kgmm.nn.kge.KGE_MODELS, without importing torch


def train_kge(
    triples: Path = typer.Option(..., "--triples", "-t", help="Directory with train.txt and valid.txt "
                                 "(head<TAB>relation<TAB>tail)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory to write."),
    model: str = typer.Option("complex", "--model", "-m", help=f"One of {', '.join(KGE_MODELS)}."),
    seed: int = typer.Option(0, "--seed"),
    epochs: int | None = typer.Option(None, "--epochs", help="Most epochs (default: the model's)."),
    dim: int | None = typer.Option(None, "--dim", help="Embedding size (default: the model's)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: the model's)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Queries per step (default: the model's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    as_json: bool = JsonOption,
) -> None:
    """Train a link predictor on train.txt, keep the epoch with the best filtered MRR on valid.txt."""
    from kgmm.tasks.kge import train_kge as run

    _check_model(model)
    hparams = {"epochs": epochs, "hidden_channels": dim, "lr": lr, "batch_size": batch_size}
    result = run(triples, out, model=model, seed=seed, hparams=hparams, progress=not quiet)
    emit({"title": f"trained {model} -> {out}", **result}, as_json, render_metrics)


def eval_kge(
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint directory from `kgmm train kge`."),
    triples: Path = typer.Option(..., "--triples", "-t", help="Triples file to rank (e.g. test.txt)."),
    filter_with: list[Path] = typer.Option([], "--filter-with", help="More files of true triples to filter "
                                           "(beside the model's train/valid and --triples itself); repeatable."),
    as_json: bool = JsonOption,
) -> None:
    """Filtered MRR and Hits@1/3/10 over heads and tails (ties counted against the model)."""
    from kgmm.tasks.kge import evaluate_kge

    result = evaluate_kge(model, triples, extra_known=filter_with)
    emit({"title": f"{result['model']} on {triples.name}", **result}, as_json, render_metrics)


def predict_links(
    head: str = typer.Argument(..., help="Head entity name, as in the triples files."),
    relation: str = typer.Argument(..., help="Relation name."),
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint directory from `kgmm train kge`."),
    k: int = typer.Option(10, "--k", "-k", help="How many tails."),
    triples: list[Path] = typer.Option([], "--triples", "-t", help="Triples files or directories whose triples "
                                       "also count as known (the model's train/valid always do); repeatable."),
    new_only: bool = typer.Option(False, "--new-only", help="Only tails not already known."),
    as_json: bool = JsonOption,
) -> None:
    """The k likeliest tails of (HEAD, RELATION, ?) with scores, each marked known or new."""
    from kgmm.tasks.kge import predict_links as run

    predictions = run(model, head, relation, k=k, known_paths=triples, new_only=new_only)
    result = {"head": head, "relation": relation, "model": str(model),
              "predictions": [prediction.to_dict() for prediction in predictions]}
    emit(result, as_json, _render_predictions)


def register(train_app: typer.Typer, eval_app: typer.Typer, predict_app: typer.Typer) -> None:
    """Add ``train kge``, ``eval kge`` and ``predict links`` to the command groups."""
    train_app.command("kge")(train_kge)
    eval_app.command("kge")(eval_kge)
    predict_app.command("links")(predict_links)


def _check_model(model: str) -> None:
    from kgmm.errors import ValidationError

    if model not in KGE_MODELS:
        raise ValidationError(f"no KGE model {model!r}; available: {', '.join(KGE_MODELS)}")


def _render_predictions(result: dict) -> None:
    from rich.table import Table

    table = Table("#", "tail", "score", "probability", "status", title=f"({result['head']}, {result['relation']}, ?)")
    for rank, prediction in enumerate(result["predictions"], 1):
        status = f"known ({prediction['source']})" if prediction["known"] else "[bold green]new[/]"
        table.add_row(str(rank), prediction["tail"], f"{prediction['score']:.4f}",
                      f"{prediction['probability']:.4f}", status)
    console().print(table)
