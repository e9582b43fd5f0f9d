"""The domain lexicon as a spaCy component: phrase matching that sets entity ids.

Like spaCy's ``entity_ruler`` with ``overwrite_ents``, but built for lexicons of ~100k phrases:
patterns are tokenised once with the bare tokenizer (several times faster to set up), ordinary
phrases match case-insensitively, and all-caps abbreviations ("COPD", "MI") match only in capitals,
so "odd" in prose is not the abbreviation "ODD".
"""

from __future__ import annotations

from collections import defaultdict

from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans


@Language.factory("kgmm_lexicon", default_config={})
def make_lexicon_ruler(nlp: Language, name: str) -> LexiconRuler:
    return LexiconRuler(nlp, name)


class LexiconRuler:
    """Marks lexicon phrases as entities labelled with their type, with ``ent_id_`` = the canonical id."""

    def __init__(self, nlp: Language, name: str = "kgmm_lexicon") -> None:
        self.name = name
        self.nlp = nlp
        self.lower_matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        self.exact_matcher = PhraseMatcher(nlp.vocab, attr="ORTH")
        self.labels: dict[int, str] = {}

    def add(self, phrases: dict[str, tuple[str, str, bool]]) -> None:
        """Add phrases: ``text -> (entity id, entity type, case-sensitive)``."""
        grouped: dict[tuple[str, bool], list[str]] = defaultdict(list)
        types: dict[str, str] = {}
        for text, (entry_id, entry_type, exact) in phrases.items():
            grouped[(entry_id, exact)].append(text)
            types[entry_id] = entry_type
        texts = [text for group in grouped.values() for text in group]
        docs = iter(self.nlp.tokenizer.pipe(texts, batch_size=2000))
        for (entry_id, exact), group in grouped.items():
            matcher = self.exact_matcher if exact else self.lower_matcher
            matcher.add(entry_id, [next(docs) for _ in group])
            self.labels[self.nlp.vocab.strings.add(entry_id)] = types[entry_id]

    def __call__(self, doc: Doc) -> Doc:
        matches = list(self.lower_matcher(doc)) + list(self.exact_matcher(doc))
        if not matches:
            return doc
        spans = filter_spans(
            [Span(doc, start, end, label=self.labels[match_id], span_id=match_id) for match_id, start, end in matches]
        )
        taken = {i for span in spans for i in range(span.start, span.end)}
        kept = [ent for ent in doc.ents if not any(i in taken for i in range(ent.start, ent.end))]
        doc.ents = sorted(spans + kept, key=lambda span: span.start)
        return doc
