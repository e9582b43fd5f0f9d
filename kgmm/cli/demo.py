"""``kgmm demo``: the main job on the shipped samples, end to end."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from kgmm.cli.output import DEMO_STORE, JsonOption, console, emit


def render_demo(result: dict) -> None:
    from kgmm.cli.graph import render_neighbourhood, render_stats

    out = console()
    for domain, report in result["ingest"].items():
        out.print(
            f"{domain}: {report['sources_new']} new source(s), {report['sources_known']} already stored, "
            f"+{report['entities_new']} entities, +{report['relations_new']} relations",
            markup=False,
        )
    render_stats(result["stats"])
    for item in result["neighbourhoods"]:
        out.print()
        render_neighbourhood(item)
    out.print()
    out.print(f"explore it: kgmm stats --store {result['stats']['store']}  (or export KGMM_STORE={result['stats']['store']})",
              markup=False, highlight=False)


def demo(
    store: str = typer.Option(DEMO_STORE, "--store", "-s", help="Store folder for the demo graph."),
    data: Path | None = typer.Option(None, "--data", help="The samples folder (default: ./data of a kgmm checkout)."),
    as_json: bool = JsonOption,
) -> None:
    """Ingest the medical and retail samples (texts and captioned images) and show the graph."""
    from kgmm.app.demo import run_demo
    from kgmm.store import open_store

    with open_store(store) as graph_store:
        result = run_demo(graph_store, data, progress=sys.stderr.isatty())
    emit(result, as_json, render_demo)


def register(app: typer.Typer) -> None:
    """Add ``demo``."""
    app.command()(demo)
