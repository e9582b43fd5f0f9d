"""Training and evaluation commands (``kgmm train ...``, ``kgmm eval ...``)."""

from __future__ import annotations

from pathlib import Path

import typer

from kgmm.cli.output import JsonOption, command_group, emit, render_metrics

train_app = command_group("Train models: extraction, link prediction, alignment, QA, diagnosis.")
eval_app = command_group("Evaluate models and print metrics as a table (and JSON with --json).")

DATASETS = ("bc5cdr", "conll04")


def _check_dataset(dataset: str) -> None:
    from kgmm.errors import ValidationError

    if dataset not in DATASETS:
        raise ValidationError(f"no extraction dataset {dataset!r}; available: {', '.join(DATASETS)}")


@train_app.command("extraction")
def train_extraction(
    dataset: str = typer.Option(..., "--dataset", help="bc5cdr or conll04."),
    path: list[Path] = typer.Option(..., "--path", help="Training file(s); a dev file may be given with --dev."),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to write."),
    dev: Path | None = typer.Option(None, "--dev", help="Dev file evaluated after training."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JsonOption,
) -> None:
    """Train the entity and relation extractors on a labelled data set."""
    from kgmm.tasks.extraction import train_extraction as run

    _check_dataset(dataset)
    metrics = run(dataset, list(path), out, seed=seed, dev_path=dev)
    emit({"title": f"trained {dataset} -> {out}", **metrics}, as_json, render_metrics)


@eval_app.command("extraction")
def eval_extraction(
    dataset: str = typer.Option(..., "--dataset", help="bc5cdr or conll04."),
    path: Path = typer.Option(..., "--path", help="Labelled file in the data set's format."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Model folder from `kgmm train extraction`; default: the untrained pipeline."),
    as_json: bool = JsonOption,
) -> None:
    """Precision, recall and F1 of entities and relations on a labelled file."""
    from kgmm.tasks.extraction import evaluate_extraction

    _check_dataset(dataset)
    scores = evaluate_extraction(dataset, path, model)
    emit({"title": f"{dataset} {path.name}", **scores.to_dict()}, as_json, render_metrics)
