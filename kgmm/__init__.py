"""kgmm: knowledge-graph-augmented multimodal reasoning.

Importing the package is cheap: torch, spaCy and the stores load inside the functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "ask"]


def ask(store, question: str, **options) -> dict:
    """Answer ``question`` from a graph store, with the chain of facts and the sources behind each answer.

    With no ``model``, the store's own QA model answers: the first call trains it from the store's graph (no
    labelled questions needed; a minute on a small graph) and keeps it with the store; later calls load it.

    Args:
        store (GraphStore, str or Path): an open store, or its location (a folder or a ``bolt://`` URI, opened
            read-only for the call).
        question (str): the question; ``[brackets]`` name the entity it is about.
        **options: ``model``, ``top_k``, ``image``, ``notice``, ``progress`` of :func:`kgmm.app.ask.ask`.

    Returns:
        dict: ``answers`` (each with ``name``, ``score`` and its ``path`` of facts with their ``sources``),
        ``linked``, ``reason`` (why there is none), ``warnings`` and ``model``.
    """
    from kgmm.app.ask import ask as ask_store

    if hasattr(store, "find_entities"):
        return ask_store(store, question, **options)
    from kgmm.store import open_store

    with open_store(store, read_only=True) as opened:
        return ask_store(opened, question, **options)
