"""The ``kgmm`` command line: a thin Typer layer over plain functions.

Each command parses its arguments, calls a function of the library and prints the result, as rich
tables for people or, with ``--json``, as one JSON object on the last line of stdout.
"""

from __future__ import annotations

import sys

import typer

from kgmm.cli import align, bench, demo, diagnosis, domain, graph, kge, photo_qa, qa, training

app = typer.Typer(
    name="kgmm",
    help="Knowledge-graph-augmented multimodal reasoning: build a graph from text and captioned images, then query it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
demo.register(app)
graph.register(app)
app.add_typer(training.train_app, name="train")
app.add_typer(training.eval_app, name="eval")
app.add_typer(bench.bench_app, name="bench")
predict_app = typer.Typer(help="Predict with trained models (links between entities).", no_args_is_help=True)
kge.register(training.train_app, training.eval_app, predict_app)
align.register(training.train_app, training.eval_app)
qa.register(app, training.train_app, training.eval_app, bench.bench_app)
photo_qa.register(bench.bench_app)
diagnosis.register(app, training.train_app, training.eval_app, bench.bench_app)
app.add_typer(predict_app, name="predict")
app.add_typer(domain.domain_app, name="domain")


def main() -> None:
    """Entry point: run the app, turning kgmm's own errors into one clear line and exit code 2."""
    from kgmm.errors import KgmmError

    try:
        app(standalone_mode=False)
    except KgmmError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # click's usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
