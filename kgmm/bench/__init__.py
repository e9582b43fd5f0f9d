"""Benchmarks, one module per ``kgmm bench`` subject (measured on this machine, never by timed tests).

The layer above the tasks and the use cases: a benchmark may import any of them, and only the CLI imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kgmm.errors import ValidationError


def parse_sizes(text: str, *, minimum: int = 1, unit: str = "cases per label") -> list[int | None]:
    """Parse a learning curve's sizes: ``"1,5,20,all"`` -> ``[1, 5, 20, None]`` (None: all of them).

    Raises:
        ValidationError: for anything but whole numbers of at least ``minimum`` and ``all``.
    """
    sizes: list[int | None] = []
    for part in (part.strip().lower() for part in text.split(",")):
        if part == "all":
            sizes.append(None)
        elif part.isdigit() and int(part) >= minimum:
            sizes.append(int(part))
        else:
            raise ValidationError(f"--sizes: {part!r} is not a number of {unit} (at least {minimum}) or 'all'")
    if not sizes:
        raise ValidationError("--sizes: give at least one size, e.g. 1,5,20,all")
    return sizes


def plot_lines(lines: dict[str, tuple[Sequence[int], Sequence[float], str]], ticks: Sequence[str],
               out_png: str | Path, *, xlabel: str, ylabel: str, title: str = "") -> Path:
    """Write a learning-curve PNG: one line per entry of ``lines`` (label -> x positions, y values, line style),
    ``ticks`` naming the x positions, y from 0 to 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_png = Path(out_png)
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    for label, (xs, ys, style) in lines.items():
        axes.plot(list(xs), list(ys), marker="o", linestyle=style, label=label)
    axes.set_xticks(range(len(ticks)), list(ticks))
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out_png, dpi=120, format="png")
    plt.close(figure)
    return out_png
