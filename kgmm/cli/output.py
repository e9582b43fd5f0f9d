"""Printing results: rich for people, one JSON object on the last line for scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import typer

STORE_ENV = "KGMM_STORE"
DEFAULT_STORE = "kgmm-store"

StoreOption = typer.Option(
    None, "--store", "-s", help=f"Store folder (embedded) or bolt:// URI. Default: ${STORE_ENV} or ./{DEFAULT_STORE}."
)
JsonOption = typer.Option(False, "--json", help="Print one JSON object on the last line of stdout.")


def store_location(store: str | None) -> str:
    return store or os.environ.get(STORE_ENV) or DEFAULT_STORE


def open_existing_store(store: str | None):
    """Open a store that must already exist (read commands)."""
    from kgmm.errors import StoreError
    from kgmm.store import open_store

    location = store_location(store)
    if "://" not in location and not Path(location).exists():
        raise StoreError(f"no store at {location!r}; build one with `kgmm ingest PATH --store {location}` or pass --store")
    return open_store(location)


def emit(result: dict, as_json: bool, render: Callable[[dict], None]) -> None:
    """Print ``result``: as JSON when asked, else through ``render``."""
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, default=str))
    else:
        render(result)


def console():
    from rich.console import Console

    return Console()
