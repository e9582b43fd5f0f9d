"""Graph stores: the ``GraphStore`` contract and :func:`open_store`, which picks the backend for a location.

Importing this package is cheap: the database driver loads when a store is opened.
"""

from __future__ import annotations

from pathlib import Path

from kgmm.errors import StoreError
from kgmm.store.base import GraphStore

_BOLT_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")

__all__ = ["GraphStore", "open_store"]


def open_store(location: str | Path, *, read_only: bool = False) -> GraphStore:
    """Open (or create) the graph store at ``location``.

    Args:
        location (str or Path): a directory for the embedded LadybugDB store (created when missing), or a
            ``bolt://`` / ``neo4j://`` URI of a Neo4j server.
        read_only (bool, optional): open without write access. (default: :obj:`False`)

    Raises:
        StoreError: when the location cannot be opened; the message names it and the fix.
    """
    text = str(location).strip()
    if not text:
        raise StoreError("expected a store location (a directory, or a bolt:// URI), got an empty string")
    lowered = text.lower()
    if lowered.startswith(_BOLT_SCHEMES):
        raise StoreError(
            f"cannot open {text}: the Neo4j backend comes with kgmm[neo4j] in a later release; "
            "use a directory path for the embedded store meanwhile"
        )
    if "://" in text:
        raise StoreError(
            f"unknown store location {text!r}: use a directory path, or a bolt:// or neo4j:// URI"
        )
    from kgmm.store.embedded import EmbeddedStore

    return EmbeddedStore(location if isinstance(location, Path) else Path(text), read_only=read_only)
