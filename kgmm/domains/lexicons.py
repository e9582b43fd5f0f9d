"""Lexicon builders: the domain vocabularies that the EntityRuler matches.

Each builder is registered under a name that a pack's ``lexicons`` list refers to, and yields
``LexiconEntry`` values built from a real source (an ontology package or a file shipped in the pack).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kgmm.errors import DomainError

LexiconBuilder = Callable[[], Iterator["LexiconEntry"]]
_BUILDERS: dict[str, LexiconBuilder] = {}


@dataclass(frozen=True)
class LexiconEntry:
    """One canonical term and the surface forms that resolve to it.

    Args:
        id (str): canonical entity id (an ontology id such as ``HP:0001945``, or ``domain:type:name``).
        name (str): preferred name.
        type (str): entity type of the domain pack.
        synonyms (tuple[str, ...]): other names, abbreviations and spellings that mean the same thing.
        ontology_ids (tuple[str, ...]): cross-references (``ICD10CM:J10``, ``DDXPLUS:E_91``).
    """

    id: str
    name: str
    type: str
    synonyms: tuple[str, ...] = ()
    ontology_ids: tuple[str, ...] = ()


def register_lexicon(name: str) -> Callable[[LexiconBuilder], LexiconBuilder]:
    """Register a lexicon builder under ``name`` (the name packs use in ``lexicons``)."""

    def decorator(builder: LexiconBuilder) -> LexiconBuilder:
        _BUILDERS[name] = builder
        return builder

    return decorator


def build_lexicon(name: str, pack=None) -> list[LexiconEntry]:
    """Return the entries of the registered lexicon ``name``, or of the lexicon file ``name`` (a ``.tsv`` in the
    folder of ``pack``, a :class:`kgmm.domains.DomainPack`: columns type, name, synonyms; see
    ``kgmm domain init``)."""
    if name.endswith(".tsv"):
        if pack is None:
            raise DomainError(f"lexicon file {name!r} needs its pack's folder")
        from kgmm.domains.builders import file_lexicon

        return list(file_lexicon(pack.path / name, pack.name))
    _load_builtin_builders()
    if name not in _BUILDERS:
        raise DomainError(f"no lexicon {name!r}; available: {', '.join(sorted(_BUILDERS))}")
    return list(_BUILDERS[name]())


def _load_builtin_builders() -> None:
    # Builders live in their own modules so that a pack that needs none of them imports none.
    from kgmm.domains import builders  # noqa: F401
