"""Relation extraction from the dependency parse, constrained by the domain's relation schema.

For every pair of entities in a sentence whose types the schema allows, the shortest dependency
path between them is read: a trigger lemma of the relation on the path gives a ``dep_pattern``
relation; a pair the pack allows by co-occurrence alone gives a weaker ``cooccurrence`` one.
"""

from __future__ import annotations

from dataclasses import dataclass

from spacy.tokens import Span, Token

from kgmm.domains import DomainPack, RelationRule

MAX_PATH_EDGES = 8
SHORT_PATH_EDGES = 4


@dataclass(frozen=True)
class RelationCandidate:
    """A relation between two entity spans of one sentence."""

    head: Span
    type: str
    tail: Span
    confidence: float
    extractor: str


def dependency_path(a: Token, b: Token) -> list[Token]:
    """Return the tokens on the dependency path from ``a`` to ``b`` (both included)."""
    up_from_a = [a, *a.ancestors]
    index_in_a = {t.i: n for n, t in enumerate(up_from_a)}
    up_from_b: list[Token] = []
    for token in (b, *b.ancestors):
        up_from_b.append(token)
        if token.i in index_in_a:
            break
    meet = up_from_b[-1]
    if meet.i not in index_in_a:
        return []
    return up_from_a[: index_in_a[meet.i] + 1] + list(reversed(up_from_b[:-1]))


def _has_trigger(path: list[Token], rule: RelationRule, head: Span, tail: Span, others: set[int] = frozenset()) -> bool:
    """Return whether a trigger of ``rule`` lies on the path, or modifies it without governing a third
    entity (in "naloxone reversed the clonidine-induced hypotension", "induced" belongs to clonidine).

    ``others`` holds the token indices of the sentence's other entities.
    """
    triggers = set(rule.triggers)
    if not triggers:
        return False
    for token in path:
        if head.start <= token.i < head.end or tail.start <= token.i < tail.end:
            continue
        if token.lemma_.lower() in triggers or token.lower_ in triggers:
            return True
        # "X-induced Y": the trigger is a hyphenated modifier of the tail.
        if "-" in token.text and any(part in triggers for part in token.lower_.split("-")):
            return True
    # Triggers that modify a path token ("is used to treat", "associated with") count as well.
    for token in path:
        for child in token.children:
            if child.dep_ in ("aux", "auxpass", "prt", "xcomp", "acomp", "amod", "compound") and (
                child.lemma_.lower() in triggers
            ):
                if head.start <= child.i < head.end or tail.start <= child.i < tail.end:
                    continue
                if any(t.i in others for t in child.subtree):
                    continue
                return True
    return False


def _direct_label(path: list[Token]) -> str:
    """Return the dependency label of a one-edge path (the child's label)."""
    first, second = path
    return first.dep_ if first.head.i == second.i else second.dep_


def _order(a: Span, b: Span, rule: RelationRule) -> tuple[Span, Span] | None:
    """Decide head and tail for a pair the rule allows, using types first, then the syntax."""
    forward = rule.allows(a.label_, b.label_)
    backward = rule.allows(b.label_, a.label_)
    if forward and not backward:
        return a, b
    if backward and not forward:
        return b, a
    if not forward:
        return None
    # Same-type pair: the earlier span is the head unless it is the passive subject ("B was killed by A").
    first, second = (a, b) if a.start <= b.start else (b, a)
    if first.root.dep_ in ("nsubjpass", "auxpass") or any(t.dep_ == "agent" for t in second.root.ancestors):
        return second, first
    return first, second


def extract_relations(sent: Span, ents: list[Span], pack: DomainPack) -> list[RelationCandidate]:
    """Return the schema-allowed relations between ``ents`` (entities of one sentence)."""
    found: list[RelationCandidate] = []
    positions = {span.start: {i for i in range(span.start, span.end)} for span in ents}
    for i, a in enumerate(ents):
        for b in ents[i + 1 :]:
            if a.ent_id_ and a.ent_id_ == b.ent_id_:
                continue
            rules = pack.rules_for(a.label_, b.label_) + [
                r for r in pack.rules_for(b.label_, a.label_) if r not in pack.rules_for(a.label_, b.label_)
            ]
            if not rules:
                continue
            path = dependency_path(a.root, b.root)
            if not path or len(path) - 1 > MAX_PATH_EDGES:
                continue
            others = set().union(*(tokens for start, tokens in positions.items() if start not in (a.start, b.start)))
            for rule in rules:
                ordered = _order(a, b, rule)
                if ordered is None:
                    continue
                head, tail = ordered
                if len(path) == 2 and _direct_label(path) in rule.dep_labels:
                    found.append(RelationCandidate(head, rule.type, tail, 0.7, "dep_pattern"))
                elif _has_trigger(path, rule, head, tail, others):
                    confidence = 0.8 if len(path) - 1 <= SHORT_PATH_EDGES else 0.6
                    found.append(RelationCandidate(head, rule.type, tail, confidence, "dep_pattern"))
                elif rule.type in pack.cooccurrence and len(path) - 1 <= SHORT_PATH_EDGES:
                    found.append(
                        RelationCandidate(head, rule.type, tail, float(pack.cooccurrence[rule.type]), "cooccurrence")
                    )
    return found
