"""``kgmm bench photo-qa``: questions about unseen product photos, image+graph against its two ablations."""

from __future__ import annotations

from pathlib import Path

import typer

from kgmm.cli.output import JsonOption, emit, render_metrics


def bench_photo_qa(
    data: Path = typer.Option(Path("../shared/data/fashion"), "--data",
                              help="The fashion folder: catalogue.csv, products_train.csv, images/."),
    seed: int = typer.Option(0, "--seed", help="Picks the held-out photos, the folds and the models' initialisation."),
    as_json: bool = JsonOption,
) -> None:
    """Usage / season / article-type questions about held-out product photos: accuracy per question type of
    image+graph, the same with the image removed, and with the graph removed."""
    from kgmm.bench.photo_qa import photo_qa_benchmark

    result = photo_qa_benchmark(data, seed=seed, progress=not as_json)
    result = {"title": f"photo QA benchmark ({result['held_out_photos']} held-out photos, seed {seed})", **result}
    if as_json:
        emit(result, as_json, render_metrics)
        return
    from rich.table import Table

    from kgmm.cli.output import console

    kinds = list(result["question_types"])
    table = Table("model", *kinds, "mean", title=result["title"])
    rows = {**result["results"], **{f"{name} (reference)": row for name, row in result["reference"].items()}}
    for name, row in rows.items():
        table.add_row(name, *(f"{row[kind]:.4f}" for kind in [*kinds, "mean"]))
    console().print(table)
    selection = result["selection"]
    console().print(f"chosen on {selection['folds']}-fold validation over the training photos: seed mix "
                    f"{selection['seed_mix']} (share of seeds from similar photos), head weight "
                    f"{selection['head_weight']}, image-removed prior {selection['no_image_prior']!r}", highlight=False)
    beaten = [kind for kind, beats in result["beats_both"].items() if beats]
    console().print(f"image+graph beats both ablations on {len(beaten)} of {len(kinds)} question types"
                    f"{': ' + ', '.join(beaten) if beaten else ''}; {result['seconds']['total']} s", highlight=False)


def register(bench_app: typer.Typer) -> None:
    """Add ``bench photo-qa``."""
    bench_app.command("photo-qa")(bench_photo_qa)
