"""Benchmarks (``kgmm bench ...``): measured on this machine, printed as a table and JSON."""

from __future__ import annotations

from pathlib import Path

import typer

from kgmm.cli.output import JsonOption, emit
from kgmm.cli.training import render_metrics

bench_app = typer.Typer(help="Benchmarks: ingest speed, start-up time.", no_args_is_help=True)


@bench_app.command("ingest")
def bench_ingest(
    data: Path = typer.Option(Path("../shared/data"), "--data", help="The shared data folder the corpus is built from."),
    domain: str = typer.Option("medical", "--domain", "-d"),
    docs: int = typer.Option(5000, "--docs", help="Corpus size in documents."),
    store: Path | None = typer.Option(None, "--store", help="Store folder (default: a temporary one, removed after)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = JsonOption,
) -> None:
    """Documents per second of a full ingest, its spaCy/store split, and spaCy alone on the same texts."""
    from kgmm.bench import bench_ingest as run

    result = run(data, domain=domain, docs=docs, store_dir=store, seed=seed)
    emit({"title": f"ingest benchmark ({domain}, {result['documents']} docs)", **result}, as_json, render_metrics)


@bench_app.command("startup")
def bench_startup(
    repeats: int = typer.Option(5, "--repeats"),
    as_json: bool = JsonOption,
) -> None:
    """Median time of `import kgmm` and `kgmm --help` in fresh interpreters (includes Python's own start-up)."""
    from kgmm.bench import bench_startup as run

    emit({"title": "start-up", **run(repeats)}, as_json, render_metrics)
