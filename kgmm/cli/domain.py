"""Domain pack commands: ``kgmm domain init`` and ``kgmm domain check``."""

from __future__ import annotations

from pathlib import Path

import typer

from kgmm.cli.output import JsonOption, command_group, emit, render_metrics

domain_app = command_group("Scaffold and check domain packs (entity types, lexicon, relations, labels).")


@domain_app.command("init")
def init(
    name: str = typer.Argument(..., help="The new domain's name (lower-case letters, digits, underscores)."),
    folder: Path | None = typer.Option(None, "--dir", help="Where to write the pack (default ./NAME)."),
    base: str | None = typer.Option(None, "--from", help="A built-in pack to extend (medical, retail, general)."),
    as_json: bool = JsonOption,
) -> None:
    """Write a domain pack to fill in: pack.json, lexicon.tsv, knowledge.json and a README."""
    from kgmm.domains.scaffold import init_domain

    result = init_domain(name, folder, base=base)
    emit({"title": f"domain pack {name} -> {result['path']} (fill it in; see its README.md)", **result}, as_json,
         render_metrics)


@domain_app.command("check")
def check(
    folder: Path = typer.Argument(..., help="A pack folder (with pack.json)."),
    as_json: bool = JsonOption,
) -> None:
    """Load a pack as kgmm will and count its types, relations, lexicon entries and labels."""
    from kgmm.domains.scaffold import check_domain

    emit({"title": f"domain pack {folder}", **check_domain(folder)}, as_json, render_metrics)
