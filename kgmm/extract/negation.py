"""Clinical negation and uncertainty as a spaCy component (ConText-style trigger rules).

"denies fever", "no evidence of pneumonia" and "pneumonia was ruled out" mark the entity negated;
"possible pneumonia" and "cannot exclude fracture" mark it uncertain. Scope runs from the trigger to
the entity within the sentence and stops at a termination word ("but", "however", ...).
"""

from __future__ import annotations

from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

PRE_NEGATION = (
    "no", "not", "denies", "denied", "deny", "denying", "without", "absence of", "absent", "negative for",
    "no evidence of", "no sign of", "no signs of", "free of", "never had", "never", "no history of",
    "no complaints of", "none", "nor", "neither", "non", "fails to reveal", "failed to reveal", "resolution of",
    "unremarkable for", "ruled out", "no new", "no further",
)
POST_NEGATION = (
    "was ruled out", "were ruled out", "is ruled out", "has been ruled out", "have been ruled out", "is absent",
    "was absent", "are absent", "were absent", "was negative", "were negative", "is negative", "not seen",
    "not present", "not identified", "not detected", "has resolved", "resolved", "free",
)
PRE_UNCERTAIN = (
    "possible", "possibly", "probable", "probably", "suspected", "suspect", "suspicion of", "suspicious for",
    "concern for", "concerning for", "may", "might", "could", "likely", "questionable", "cannot exclude",
    "cannot be excluded", "cannot rule out", "can not rule out", "rule out", "r/o", "differential diagnosis",
    "differential includes", "versus", "vs", "presumed", "perhaps", "maybe", "query", "worrisome for",
    "question of", "doubtful", "equivocal",
)
POST_UNCERTAIN = (
    "is suspected", "was suspected", "is possible", "is likely", "is unlikely", "was unlikely",
    "cannot be excluded", "can not be excluded", "not excluded", "is questionable", "unlikely", "?",
)
# Phrases that contain a trigger word but negate nothing ("not only", "gram negative").
PSEUDO = (
    "no increase", "no change", "no significant change", "not only", "not necessarily", "not certain if",
    "gram negative", "without difficulty", "not extend", "no interval change", "not cause", "not drain",
)
TERMINATION = (
    "but", "however", "although", "though", "except", "aside from", "apart from", "which", "who", "yet",
    "secondary to", "due to", "because", "as well as", "still", "presents", "presented", "reports", "reported",
    "complains", "complained", ";", ":",
)

PRE_SCOPE_TOKENS = 12
POST_SCOPE_TOKENS = 6


def _register_extensions() -> None:
    for name in ("negated", "uncertain"):
        if not Span.has_extension(name):
            Span.set_extension(name, default=False)


@Language.factory("kgmm_negation", default_config={})
def make_negation(nlp: Language, name: str) -> NegationDetector:
    return NegationDetector(nlp, name)


class NegationDetector:
    """Sets ``ent._.negated`` and ``ent._.uncertain`` from trigger phrases around each entity."""

    def __init__(self, nlp: Language, name: str = "kgmm_negation") -> None:
        _register_extensions()
        self.name = name
        self.matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
        for label, phrases in (
            ("PRE_NEG", PRE_NEGATION),
            ("POST_NEG", POST_NEGATION),
            ("PRE_UNC", PRE_UNCERTAIN),
            ("POST_UNC", POST_UNCERTAIN),
            ("PSEUDO", PSEUDO),
            ("TERM", TERMINATION),
        ):
            self.matcher.add(label, [nlp.make_doc(p) for p in phrases])

    def __call__(self, doc: Doc) -> Doc:
        if not doc.ents:
            return doc
        matches = [Span(doc, start, end, label=match_id) for match_id, start, end in self.matcher(doc)]
        triggers = [t for t in filter_spans(matches) if t.label_ != "PSEUDO"]
        for ent in doc.ents:
            sent = ent.sent
            local = [t for t in triggers if t.start >= sent.start and t.end <= sent.end]
            ent._.negated = self._in_scope(ent, local, "PRE_NEG", "POST_NEG")
            ent._.uncertain = not ent._.negated and self._in_scope(ent, local, "PRE_UNC", "POST_UNC")
        return doc

    @staticmethod
    def _in_scope(ent: Span, triggers: list[Span], pre: str, post: str) -> bool:
        terms = [t for t in triggers if t.label_ == "TERM"]
        for trigger in triggers:
            if trigger.start < ent.end and ent.start < trigger.end:
                continue  # a trigger word inside the entity name itself
            if trigger.label_ == pre and trigger.end <= ent.start and ent.start - trigger.end <= PRE_SCOPE_TOKENS:
                if not any(trigger.end <= t.start < ent.start for t in terms):
                    return True
            if trigger.label_ == post and trigger.start >= ent.end and trigger.start - ent.end <= POST_SCOPE_TOKENS:
                if not any(ent.end <= t.start < trigger.start for t in terms):
                    return True
        return False
