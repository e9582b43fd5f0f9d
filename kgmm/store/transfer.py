"""Copy a graph from one store to another (embedded <-> Neo4j), with the counts checked at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kgmm.errors import StoreError
from kgmm.store.base import GraphStore
from kgmm.utils import batched

_COUNTED = ("entities", "relations", "documents", "images", "mentions", "retrieved_links")


def copy_store(source: GraphStore, target: GraphStore, *, batch_size: int = 10_000, progress: bool = False) -> dict:
    """Copy every entity, relation, mention (provenance and confidence kept) and source of ``source`` into ``target``.

    Writes follow ingest's order (entities, relations, mentions, then sources), each in batches through
    the idempotent upserts, so an interrupted copy is simply run again. Copying into a non-empty store
    merges the two graphs by the contract's rules.

    Returns:
        dict: what was copied, and both stores' counts.

    Raises:
        StoreError: when, at the end, the target holds fewer entities, relations, sources, mentions or
            retrieved links than the source (a write was lost), naming both stores.
    """
    if batch_size < 1:
        raise StoreError(f"expected a batch size of at least 1, got {batch_size}")
    if source.uri == target.uri and type(source) is type(target) and getattr(source, "database", None) == getattr(target, "database", None):
        raise StoreError(f"cannot copy the store at {source.uri} into itself; give another --to / --from location")
    expected = source.stats()
    bar = _progress_bar(progress, expected.entities + expected.relations + expected.mentions + expected.documents + expected.images)
    copied = {"entities": 0, "relations": 0, "mentions": 0, "sources": 0}
    steps: Sequence[tuple[str, Callable[[], Iterable[Any]], Callable[[list[Any]], int]]] = (
        ("entities", source.iter_entities, target.upsert_entities),
        ("relations", source.iter_relations, target.upsert_relations),
        ("mentions", source.iter_mentions, target.upsert_mentions),
        ("sources", source.iter_sources, target.upsert_sources),
    )
    try:
        for name, read, write in steps:
            for batch in batched(read(), batch_size):
                copied[name] += write(batch)
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    found = target.stats()
    short = [
        f"{name} {getattr(found, name):,} < {getattr(expected, name):,}"
        for name in _COUNTED
        if getattr(found, name) < getattr(expected, name)
    ]
    if short:
        raise StoreError(
            f"the copy from {source.uri} to {target.uri} is incomplete ({'; '.join(short)}); run the same command again "
            "(copies are idempotent)"
        )
    return {
        "from": source.uri,
        "to": target.uri,
        "copied": copied,
        "source_stats": {name: getattr(expected, name) for name in _COUNTED},
        "target_stats": {name: getattr(found, name) for name in _COUNTED},
    }


def _progress_bar(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", desc="copy", leave=False)
