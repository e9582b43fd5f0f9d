"""The ``kgmm`` command line: a thin Typer layer over plain functions.

Each command parses its arguments, calls a function of the library and prints the result, as rich
tables for people or, with ``--json``, as one JSON object on the last line of stdout.
"""

from __future__ import annotations

import sys

import typer

from kgmm.cli import align, bench, demo, diagnosis, domain, graph, kge, photo_qa, qa, training
from kgmm.cli.output import command_group

# A usage error (unknown option or command, missing or malformed argument) exits with this code, as click's own does.
USAGE_ERROR = 2

app = command_group(
    "Knowledge-graph-augmented multimodal reasoning: build a graph from text and captioned images, then query it.",
    name="kgmm",
)


def _show_version(value: bool) -> None:
    if value:
        from kgmm import __version__

        typer.echo(f"kgmm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Knowledge-graph-augmented multimodal reasoning: build a graph from text and captioned images, then query it."""


demo.register(app)
graph.register(app)
app.add_typer(training.train_app, name="train")
app.add_typer(training.eval_app, name="eval")
app.add_typer(bench.bench_app, name="bench")
predict_app = command_group("Predict with trained models (links between entities).")
kge.register(training.train_app, training.eval_app, predict_app)
align.register(training.train_app, training.eval_app)
qa.register(app, training.train_app, training.eval_app, bench.bench_app)
photo_qa.register(bench.bench_app)
diagnosis.register(app, training.train_app, training.eval_app, bench.bench_app)
app.add_typer(predict_app, name="predict")
app.add_typer(domain.domain_app, name="domain")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; kgmm's own errors become one ``error:`` line and exit code 2, a usage error the
    usage line and one message (exit code 2), Ctrl-C exit code 130 — never a traceback for any of them."""
    from kgmm.errors import KgmmError

    try:
        code = app(args=argv, prog_name="kgmm", standalone_mode=False)  # a command's typer.Exit(code) returns here
    except KgmmError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if not _is_click_exception(e):
            raise
        e.show()
        sys.exit(e.exit_code if e.exit_code else USAGE_ERROR)
    if isinstance(code, int) and code:
        sys.exit(code)


def _is_click_exception(error: Exception) -> bool:
    """Whether ``error`` is a click usage error, from click itself or from the copy of click a typer release vendors
    (typer 0.29 raises ``typer._click.exceptions.NoSuchOption``, which no ``click.ClickException`` catches)."""
    return any(cls.__name__ == "ClickException" for cls in type(error).__mro__) and hasattr(error, "show")
