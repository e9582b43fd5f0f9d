"""Contrastive alignment commands: ``kgmm train align`` and ``kgmm eval align``."""

from __future__ import annotations

from pathlib import Path

import typer

from kgmm.cli.output import JsonOption, emit, render_metrics

SPLITS = ("holdout", "train", "all")  # kgmm.tasks.align.SPLITS, without importing torch
BASELINES = ("imagenet-labels",)


def train_align(
    pairs: Path = typer.Option(..., "--pairs", "-p", help="Image–text pairs: JSONL/CSV with image and text columns, "
                               "a Flickr8k captions.json, a fashion products CSV or MedPix descriptions JSONL."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of images held out (split by image, never trained on)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the split, the validation slice and training."),
    epochs: int | None = typer.Option(None, "--epochs", help="Most epochs (default 150; chosen on a validation slice)."),
    vision_model: str | None = typer.Option(None, "--vision-model", help="A local transformers vision model folder "
                                            "(default: the packaged EfficientNet-Lite0)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    as_json: bool = JsonOption,
) -> None:
    """Train projection heads aligning images, texts and label entities with a symmetric InfoNCE loss."""
    from kgmm.tasks.align import train_align as run

    result = run(pairs, out, holdout=holdout, seed=seed, epochs=epochs, vision_model=vision_model,
                 progress=not quiet and not as_json)
    emit({"title": f"trained alignment -> {out}", **result}, as_json, render_metrics)


def eval_align(
    pairs: Path = typer.Option(..., "--pairs", "-p", help="Image–text pairs to rank (same formats as training)."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Model directory from `kgmm train align`."),
    split: str = typer.Option("holdout", "--split", help=f"One of {', '.join(SPLITS)} (the model's split)."),
    candidates: int | None = typer.Option(None, "--candidates", help="Rank each query among its own item and N-1 "
                                          "others drawn with the seed (default: all)."),
    label: str | None = typer.Option(None, "--label", help="A label column (e.g. articleType): top-1 accuracy of "
                                     "the nearest aligned entity."),
    baseline: str | None = typer.Option(None, "--baseline", help="Score the zero-training baseline instead: "
                                        f"{', '.join(BASELINES)}."),
    holdout: float | None = typer.Option(None, "--holdout", help="Held-out share (default: the model's, else 0.2)."),
    seed: int | None = typer.Option(None, "--seed", help="Split and candidate seed (default: the model's, else 0)."),
    as_json: bool = JsonOption,
) -> None:
    """Image->text and text->image Recall@1/5/10 and median rank (ties counted against the model)."""
    from kgmm.errors import ValidationError
    from kgmm.tasks.align import evaluate_align

    if split not in SPLITS:
        raise ValidationError(f"no split {split!r}; available: {', '.join(SPLITS)}")
    if baseline is not None and baseline not in BASELINES:
        raise ValidationError(f"no baseline {baseline!r}; available: {', '.join(BASELINES)}")
    result = evaluate_align(model, pairs, split=split, candidates=candidates, label=label, baseline=baseline,
                            holdout=holdout, seed=seed, progress=not as_json)
    emit({"title": f"{result['model']} on {pairs.name} ({split})", **result}, as_json, render_metrics)


def register(train_app: typer.Typer, eval_app: typer.Typer) -> None:
    """Add ``train align`` and ``eval align`` to the command groups."""
    train_app.command("align")(train_align)
    eval_app.command("align")(eval_align)
