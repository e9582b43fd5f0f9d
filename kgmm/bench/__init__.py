"""Benchmarks, one module per ``kgmm bench`` subject (measured on this machine, never by timed tests).

The layer above the tasks and the use cases: a benchmark may import any of them, and only the CLI imports it.
"""

from __future__ import annotations

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
