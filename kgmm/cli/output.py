"""Printing results: rich for people, one JSON object on the last line for scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import typer

STORE_ENV = "KGMM_STORE"
DEFAULT_STORE = "kgmm-store"
DEMO_STORE = "kgmm-demo-store"  # where `kgmm demo` writes unless told otherwise

StoreOption = typer.Option(
    None, "--store", "-s", help=f"Store folder (embedded) or bolt:// URI. Default: ${STORE_ENV} or ./{DEFAULT_STORE}."
)
JsonOption = typer.Option(False, "--json", help="Print one JSON object on the last line of stdout.")
UserOption = typer.Option(
    None, "--user", "-u", help="Neo4j user for a bolt:// store (else the URI's, $NEO4J_USER, or neo4j). "
    "The password comes from the URI or $NEO4J_PASSWORD.",
)
DatabaseOption = typer.Option(
    None, "--database", help="Neo4j database of a bolt:// store (else $NEO4J_DATABASE or the server's default)."
)


def command_group(help: str, **options) -> typer.Typer:
    """Return a Typer app (or sub-command group) configured as every kgmm group is: help with no arguments, no shell
    completion, no pretty tracebacks, and help text shown as written (no rich markup, which would eat
    ``[brackets]``)."""
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                       rich_markup_mode=None, **options)


def store_location(store: str | None) -> str:
    return store or os.environ.get(STORE_ENV) or DEFAULT_STORE


def open_any_store(location: str, user: str | None = None, database: str | None = None, *, read_only: bool = False):
    """Open (or create) the store at ``location``, a folder or a bolt:// URI."""
    from kgmm.store import open_store

    return open_store(location, user=user, database=database, read_only=read_only)


def open_existing_store(store: str | None, user: str | None = None, database: str | None = None, *,
                        read_only: bool = True):
    """Open a store that must already exist (read-only unless asked: read commands need no write access)."""
    from kgmm.errors import StoreError

    location = store_location(store)
    if "://" not in location and not Path(location).exists():
        hint = ""
        if store is None and Path(DEMO_STORE).is_dir():
            hint = f" (the demo's graph is in {DEMO_STORE!r}: pass --store {DEMO_STORE})"
        raise StoreError(f"no store at {location!r}; build one with `kgmm ingest PATH --store {location}` or pass "
                         f"--store{hint}")
    return open_any_store(location, user, database, read_only=read_only)


def emit(result: dict, as_json: bool, render: Callable[[dict], None]) -> None:
    """Print ``result``: as JSON when asked, else through ``render``."""
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, default=str))
    else:
        render(result)


def console():
    """The console results print to: on a terminal lines wrap at its width; piped, a line stays one line."""
    import sys

    from rich.console import Console

    return Console(soft_wrap=not sys.stdout.isatty())


def render_metrics(result: dict) -> None:
    """Print a result as a two-column table: nested keys dotted (``image_to_text.R@5``), lists left to --json."""
    from rich.table import Table

    table = Table("metric", "value", title=result.get("title", "metrics"))
    for key, value in _flatten(result).items():
        if key != "title":
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console().print(table)


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            flat[f"{prefix}{key}"] = value
    return flat
