"""The domain lexicon as a spaCy component: phrase matching that sets entity ids.

Like spaCy's ``entity_ruler`` with ``overwrite_ents``, but built for lexicons of ~100k phrases: each phrase is
tokenised once with the pipeline's tokenizer into a :class:`PhraseTable` (token sequence -> entry id), which is
cached on disk, so a new process loads it in a fraction of a second instead of tokenising and indexing every phrase
again (5 s for the medical pack). Ordinary phrases match case-insensitively; all-caps abbreviations ("COPD", "MI")
match only in capitals, so "odd" in prose is not the abbreviation "ODD".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import filter_spans


@dataclass
class PhraseTable:
    """Lexicon phrases as token sequences: ``lower`` (lower-cased tokens, matched case-insensitively) and ``exact``
    (tokens as written) map to entry ids; ``types`` maps an entry id to its entity type."""

    lower: dict[tuple[str, ...], str] = field(default_factory=dict)
    exact: dict[tuple[str, ...], str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, phrases: dict[str, tuple[str, str, bool]], tokenizer) -> PhraseTable:
        """Tokenise ``phrases`` (``text -> (entry id, entry type, case-sensitive)``); the first phrase of a token
        sequence keeps it."""
        table = cls()
        items = list(phrases.items())
        for (_, (entry_id, entry_type, exact)), doc in zip(items, tokenizer.pipe(t for t, _ in items), strict=True):
            tokens = tuple(token.text for token in doc) if exact else tuple(token.lower_ for token in doc)
            if tokens:
                (table.exact if exact else table.lower).setdefault(tokens, entry_id)
                table.types[entry_id] = entry_type
        return table

    def to_json(self) -> dict:
        return {"lower": [[list(k), v] for k, v in self.lower.items()],
                "exact": [[list(k), v] for k, v in self.exact.items()], "types": self.types}

    @classmethod
    def from_json(cls, raw: dict) -> PhraseTable:
        return cls({tuple(k): v for k, v in raw["lower"]}, {tuple(k): v for k, v in raw["exact"]}, dict(raw["types"]))


class _SequenceIndex:
    """Token sequences with the set of their prefixes, to find every occurrence in a token list in one pass."""

    def __init__(self, sequences: dict[tuple[str, ...], str]) -> None:
        self.sequences = sequences
        self.prefixes = {key[:end] for key in sequences for end in range(1, len(key))}

    def matches(self, tokens: list[str]) -> Iterable[tuple[str, int, int]]:
        sequences, prefixes = self.sequences, self.prefixes
        for start in range(len(tokens)):
            key: tuple[str, ...] = ()
            for end in range(start + 1, len(tokens) + 1):
                key = (*key, tokens[end - 1])
                if key in sequences:
                    yield sequences[key], start, end
                if key not in prefixes:
                    break


@Language.factory("kgmm_lexicon", default_config={})
def make_lexicon_ruler(nlp: Language, name: str) -> LexiconRuler:
    return LexiconRuler(nlp, name)


class LexiconRuler:
    """Marks lexicon phrases as entities labelled with their type, with ``ent_id_`` = the canonical id."""

    def __init__(self, nlp: Language, name: str = "kgmm_lexicon") -> None:
        self.name = name
        self.nlp = nlp
        self.use(PhraseTable())

    def add(self, phrases: dict[str, tuple[str, str, bool]]) -> None:
        """Add phrases: ``text -> (entry id, entry type, case-sensitive)``."""
        table = PhraseTable.build(phrases, self.nlp.tokenizer)
        table.lower = {**table.lower, **self.table.lower}
        table.exact = {**table.exact, **self.table.exact}
        table.types = {**table.types, **self.table.types}
        self.use(table)

    def use(self, table: PhraseTable) -> None:
        """Match the phrases of ``table`` (one built by :meth:`PhraseTable.build`, or read from a cache)."""
        self.table = table
        self._lower = _SequenceIndex(table.lower)
        self._exact = _SequenceIndex(table.exact)

    def __call__(self, doc: Doc) -> Doc:
        matches = [*self._lower.matches([token.lower_ for token in doc]),
                   *self._exact.matches([token.text for token in doc])]
        if not matches:
            return doc
        types = self.table.types
        spans = filter_spans([Span(doc, start, end, label=types[entry_id], span_id=entry_id)
                              for entry_id, start, end in sorted(matches, key=lambda m: (m[1], m[2]))])
        taken = {i for span in spans for i in range(span.start, span.end)}
        kept = [ent for ent in doc.ents if not any(i in taken for i in range(ent.start, ent.end))]
        doc.ents = sorted(spans + kept, key=lambda span: span.start)
        return doc
