"""Graph stores: the ``GraphStore`` contract and :func:`open_store`, which picks the backend for a location.

Importing this package is cheap: the database driver loads when a store is opened.
"""

from __future__ import annotations

from pathlib import Path

from kgmm.errors import StoreError
from kgmm.store.base import GraphStore

_BOLT_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")

__all__ = ["GraphStore", "open_store"]


def open_store(
    location: str | Path,
    *,
    read_only: bool = False,
    user: str | None = None,
    password: str | None = None,
    database: str | None = None,
    batch_size: int | None = None,
) -> GraphStore:
    """Open (or create) the graph store at ``location``.

    Args:
        location (str or Path): a directory for the embedded LadybugDB store (created when missing), or a
            ``bolt://`` / ``neo4j://`` URI of a Neo4j server.
        read_only (bool, optional): open without write access. (default: :obj:`False`)
        user, password, database (str, optional): for a server: credentials (else from the URI, or
            ``$NEO4J_USER`` / ``$NEO4J_PASSWORD``) and the database (else ``$NEO4J_DATABASE`` or the server's default).
        batch_size (int, optional): for a server: rows per ``UNWIND`` write statement.

    Raises:
        StoreError: when the location cannot be opened; the message names it and the fix.
    """
    text = str(location).strip()
    if not text:
        raise StoreError("expected a store location (a directory, or a bolt:// URI), got an empty string")
    lowered = text.lower()
    if lowered.startswith(_BOLT_SCHEMES):
        from kgmm.store.neo4j import DEFAULT_BATCH_SIZE, Neo4jStore

        return Neo4jStore(text, user=user, password=password, database=database, read_only=read_only,
                          batch_size=batch_size or DEFAULT_BATCH_SIZE)
    if "://" in text:
        raise StoreError(
            f"unknown store location {text!r}: use a directory path, or a bolt:// or neo4j:// URI"
        )
    from kgmm.store.embedded import EmbeddedStore

    return EmbeddedStore(location if isinstance(location, Path) else Path(text), read_only=read_only)
