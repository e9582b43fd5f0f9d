"""Lexicon builders: the domain vocabularies that the EntityRuler matches.

Each builder is registered under a name that a pack's ``lexicons`` list refers to, and yields
``LexiconEntry`` values built from a real source (an ontology package or a file shipped in the pack).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum

from kgmm.errors import DomainError

LexiconBuilder = Callable[[], Iterator["LexiconEntry"]]
_BUILDERS: dict[str, LexiconBuilder] = {}


class TypeAuthority(IntEnum):
    """How firmly a lexicon's source asserts an entry's type; when lexicons disagree, the firmest source decides.

    - ``LISTED``: the source files the term under a heading that spans several types, so the type is only its
      default: an HPO phenotypic abnormality (signs, symptoms and disease-level phenotypes such as hypertension
      alike), a DDXPlus antecedent (a patient-history item: a past disease, an exposure, a habit).
    - ``CLASSIFIED``: the source's classification files the term under the type: an ICD-10-CM code of a body-system
      chapter is a diagnosis, though such chapters also hold some symptoms (chapter R says so in its preamble).
    - ``DEFINED``: the type follows from what the source says the term is: ICD-10-CM chapter R ("Symptoms, signs
      and abnormal clinical and laboratory findings"), HPO's Pain and Neoplasm branches, a diagnosis of a
      differential (DDXPlus condition) or a disease database (Orphanet, OMIM), a DDXPlus symptom question.
    - ``CURATED``: a hand-curated list (the seed lexicon, a pack's own lexicon file).
    """

    LISTED = 1
    CLASSIFIED = 2
    DEFINED = 3
    CURATED = 4


@dataclass(frozen=True)
class LexiconEntry:
    """One canonical term and the surface forms that resolve to it.

    Args:
        id (str): canonical entity id (an ontology id such as ``HP:0001945``, or ``domain:type:name``).
        name (str): preferred name.
        type (str): entity type of the domain pack.
        synonyms (tuple[str, ...]): other names, abbreviations and spellings that mean the same thing.
        ontology_ids (tuple[str, ...]): cross-references (``ICD10CM:J10``, ``DDXPLUS:E_91``).
        authority (int): how firmly the source asserts ``type`` (a :class:`TypeAuthority`; default ``CLASSIFIED``).
    """

    id: str
    name: str
    type: str
    synonyms: tuple[str, ...] = ()
    ontology_ids: tuple[str, ...] = ()
    authority: int = TypeAuthority.CLASSIFIED


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
