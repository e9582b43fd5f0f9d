"""Pair inputs of the pair head: entity groups, candidate pairs and their features, training-set priors,
and the collation of pair inputs into a :class:`kgmm.nn.extraction.PairBatch`."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kgmm.tasks.extraction.data import GroupKey, Span, _Encoded, _Example, _group_key, _window_of

if TYPE_CHECKING:
    from kgmm.nn.extraction import PairBatch


@dataclass
class _PairInputs:
    """Entity groups and candidate pairs of one text, indexed for the pair head."""

    mention_locations: list[tuple[int, int, int]]  # window, first piece, last piece + 1 (window-local, after [CLS])
    mention_spans: list[Span]
    groups: list[list[int]]
    group_keys: list[GroupKey]
    pairs: list[tuple[int, int]]
    features: list[list[float]]
    contexts: list[list[tuple[int, int, int]]]  # per pair: (window, first, last) ranges between close mentions
    labels: list[list[float]] | None = None


_N_PAIR_FEATURES = 20
_MAX_CONTEXTS = 6


def _prior_key(key: GroupKey) -> str:
    return f"{key[0]}\t{key[1]}"


def _training_priors(examples: Sequence[_Example]) -> dict[str, dict[str, int]]:
    """Document counts from the training set: how often an entity occurs, is a head or a tail, and
    how often a pair co-occurs and is related (kept only for pairs related at least once)."""
    entity, head, tail, pair_seen, pair_related = Counter(), Counter(), Counter(), Counter(), Counter()
    for ex in examples:
        keys = {_group_key(t, ex.text[s:e]) for s, e, t in ex.mentions}
        related = {(h, t) for h, _, t in ex.relations}
        entity.update(_prior_key(k) for k in keys)
        head.update({_prior_key(h) for h, _ in related})
        tail.update({_prior_key(t) for _, t in related})
        pair_related.update(f"{_prior_key(h)}\t{_prior_key(t)}" for h, t in related)
    related_pairs = set(pair_related)
    for ex in examples:
        keys = sorted({_prior_key(_group_key(t, ex.text[s:e])) for s, e, t in ex.mentions})
        for h in keys:
            for t in keys:
                if f"{h}\t{t}" in related_pairs:
                    pair_seen[f"{h}\t{t}"] += 1
    return {
        "entity": dict(entity), "head": dict(head), "tail": dict(tail),
        "pair_seen": dict(pair_seen), "pair_related": dict(pair_related),
    }


def _prior_features(priors: dict[str, dict[str, int]] | None, head: GroupKey, tail: GroupKey, own: tuple[int, int, int] | None) -> list[float]:
    """Training-set evidence about a pair; ``own`` = (head is a head, tail is a tail, pair related) in the
    example itself, subtracted so a training example does not see its own labels."""
    if not priors:
        return [0.0] * 6
    h, t = _prior_key(head), _prior_key(tail)
    is_head, is_tail, related = own or (0, 0, 0)
    present = 1 if own is not None else 0
    n_head = max(0, priors["entity"].get(h, 0) - present)
    n_tail = max(0, priors["entity"].get(t, 0) - present)
    head_count = max(0, priors["head"].get(h, 0) - is_head)
    tail_count = max(0, priors["tail"].get(t, 0) - is_tail)
    pair_related = max(0, priors["pair_related"].get(f"{h}\t{t}", 0) - related)
    pair_seen = max(0, priors["pair_seen"].get(f"{h}\t{t}", 0) - present)
    return [
        math.log1p(pair_related),
        pair_related / (pair_seen + 1),
        head_count / (n_head + 1),
        tail_count / (n_tail + 1),
        math.log1p(n_head) / 3.0,
        math.log1p(n_tail) / 3.0,
    ]


@dataclass
class _Mentions:
    """The mentions of one text that lie inside a window, grouped into entities by type and normalised text."""

    locations: list[tuple[int, int, int]]  # window, first piece, last piece + 1 (window-local, after [CLS])
    spans: list[Span]
    sentence_of: list[int]
    pieces: list[tuple[int, int]]  # [first, last + 1) pieces of the text
    keys: list[GroupKey]
    groups: list[list[int]]
    largest: dict[str, int]  # per entity type: the most mentions one entity of that type has
    text_length: int

    def sentences(self, group: int) -> set[int]:
        """The sentences the mentions of entity ``group`` are in."""
        return {self.sentence_of[i] for i in self.groups[group]}


def _locate_mentions(enc: _Encoded, mentions: Sequence[Span]) -> _Mentions:
    """Place ``mentions`` in their windows (dropping any that fit none) and group them into entities."""
    locations, kept, sentence_of, pieces_of = [], [], [], []
    for start, end, entity_type in mentions:
        pieces = enc.piece_range(start, end)
        if pieces is None:
            continue
        window = _window_of(enc, *pieces)
        if window is None:
            continue
        offset = enc.windows[window][0] - 1  # window-local index, with [CLS] at 0
        locations.append((window, pieces[0] - offset, pieces[1] - offset))
        kept.append((start, end, entity_type))
        sentence_of.append(enc.piece_sentence[pieces[0]])
        pieces_of.append(pieces)
    by_key: dict[GroupKey, list[int]] = {}
    for i, (start, end, entity_type) in enumerate(kept):
        by_key.setdefault(_group_key(entity_type, enc.text[start:end]), []).append(i)
    largest: dict[str, int] = defaultdict(int)
    for key, members in by_key.items():
        largest[key[0]] = max(largest[key[0]], len(members))
    return _Mentions(
        locations, kept, sentence_of, pieces_of, list(by_key), list(by_key.values()), largest, max(len(enc.text), 1)
    )


def _close_mentions(m: _Mentions, a: int, b: int) -> list[tuple[int, int, int]]:
    """``(gap in pieces, head mention, tail mention)`` of same-sentence, same-window mentions, closest first."""
    return sorted(
        (_gap(m.pieces[i], m.pieces[j]), i, j)
        for i in m.groups[a]
        for j in m.groups[b]
        if m.sentence_of[i] == m.sentence_of[j] and m.locations[i][0] == m.locations[j][0]
    )


def _pair_contexts(m: _Mentions, close: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """``(window, first, last)`` piece ranges between the closest mention pairs (at most ``_MAX_CONTEXTS``)."""
    contexts = []
    for _, i, j in close[:_MAX_CONTEXTS]:
        (window, s1, e1), (_, s2, e2) = m.locations[i], m.locations[j]
        contexts.append((window, min(e1, e2), max(min(e1, e2), max(s1, s2))))
    return contexts


def _closeness_features(m: _Mentions, close: list[tuple[int, int, int]]) -> list[float]:
    """Gap of the closest mention pair, whether the head comes first, and the mentions between them."""
    if not close:
        gap, head_first, between = 0, 0.0, 0
    else:
        gap, i, j = close[0]
        head_first = 1.0 if m.pieces[i][0] < m.pieces[j][0] else 0.0
        lo, hi = sorted((m.pieces[i][0], m.pieces[j][0]))
        between = sum(1 for k in range(len(m.spans)) if lo < m.pieces[k][0] < hi)
    return [math.log1p(gap) / 5.0, head_first, math.log1p(between)]


def _document_features(m: _Mentions, a: int, b: int, head_sentences: set[int], tail_sentences: set[int]) -> list[float]:
    """Co-occurrence, first-sentence, frequency and position features of the pair of entities ``a``, ``b``."""
    shared = head_sentences & tail_sentences
    sentence_distance = min(abs(x - y) for x in head_sentences for y in tail_sentences)
    head, tail = m.groups[a], m.groups[b]
    return [
        1.0 if shared else 0.0,
        math.log1p(len(shared)),
        math.log1p(sentence_distance),
        1.0 if 0 in head_sentences else 0.0,
        1.0 if 0 in tail_sentences else 0.0,
        math.log1p(len(head)),
        math.log1p(len(tail)),
        1.0 if len(head) == m.largest[m.keys[a][0]] else 0.0,
        1.0 if len(tail) == m.largest[m.keys[b][0]] else 0.0,
        m.spans[head[0]][0] / m.text_length,
        m.spans[tail[0]][0] / m.text_length,
    ]


def _build_pairs(
    enc: _Encoded,
    mentions: Sequence[Span],
    signatures: set[tuple[str, str]],
    pair_scope: str,
    relation_types: Sequence[str] = (),
    relations: set[tuple[GroupKey, str, GroupKey]] | None = None,
    priors: dict[str, dict[str, int]] | None = None,
) -> _PairInputs:
    """Entities of ``mentions`` and their candidate pairs with features (and labels when ``relations`` is given).

    Args:
        enc (_Encoded): the encoded text.
        mentions (list[Span]): the mentions to pair (gold, predicted, or both).
        signatures (set[tuple[str, str]]): the (head type, tail type) combinations that are candidates.
        pair_scope (str): ``sentence`` pairs only entities sharing a sentence; ``document`` pairs any two.
        relation_types (list[str], optional): the label columns. (default: ())
        relations (set, optional): gold relations of a training text; its own labels are then left out of
            the prior features. (default: None)
        priors (dict, optional): training-set counts (see :func:`_training_priors`). (default: None)
    """
    m = _locate_mentions(enc, mentions)
    related = {(h, t) for h, _, t in relations} if relations is not None else set()
    heads, tails = {h for h, _ in related}, {t for _, t in related}
    pairs, features, contexts, labels = [], [], [], []
    for a, head in enumerate(m.keys):
        for b, tail in enumerate(m.keys):
            if a == b or (head[0], tail[0]) not in signatures:
                continue
            head_sentences, tail_sentences = m.sentences(a), m.sentences(b)
            if pair_scope == "sentence" and not head_sentences & tail_sentences:
                continue
            close = _close_mentions(m, a, b)
            own = (int(head in heads), int(tail in tails), int((head, tail) in related)) if relations is not None else None
            features.append([
                *_document_features(m, a, b, head_sentences, tail_sentences),
                *_closeness_features(m, close),
                *_prior_features(priors, head, tail, own),
            ])
            pairs.append((a, b))
            contexts.append(_pair_contexts(m, close))
            if relations is not None:
                labels.append([1.0 if (head, r, tail) in relations else 0.0 for r in relation_types])
    return _PairInputs(
        mention_locations=m.locations,
        mention_spans=m.spans,
        groups=m.groups,
        group_keys=m.keys,
        pairs=pairs,
        features=features,
        contexts=contexts,
        labels=labels if relations is not None else None,
    )


def _gap(first: tuple[int, int], second: tuple[int, int]) -> int:
    return max(second[0] - first[1], first[0] - second[1], 0)


def _collate_pairs(items: list[_PairInputs], row_offsets: list[int], type_index: dict[str, int]) -> PairBatch | None:
    import torch

    from kgmm.nn.extraction import PairBatch

    mention_row, mention_start, mention_end = [], [], []
    group_lists, group_types = [], []
    context_row, context_start, context_end = [], [], []
    pair_contexts, pair_head, pair_tail, head_type, tail_type, features, labels, owner = [], [], [], [], [], [], [], []
    for index, (item, row_offset) in enumerate(zip(items, row_offsets, strict=True)):
        mention_base, group_base = len(mention_row), len(group_lists)
        for window, start, end in item.mention_locations:
            mention_row.append(row_offset + window)
            mention_start.append(start)
            mention_end.append(end)
        for members, key in zip(item.groups, item.group_keys, strict=True):
            group_lists.append([mention_base + m for m in members])
            group_types.append(type_index.get(key[0], 0))
        for p, (a, b) in enumerate(item.pairs):
            ids = []
            for window, start, end in item.contexts[p]:
                ids.append(len(context_row))
                context_row.append(row_offset + window)
                context_start.append(start)
                context_end.append(end)
            pair_contexts.append(ids)
            pair_head.append(group_base + a)
            pair_tail.append(group_base + b)
            head_type.append(group_types[group_base + a])
            tail_type.append(group_types[group_base + b])
            features.append(item.features[p])
            owner.append(index)
            if item.labels is not None:
                labels.append(item.labels[p])
    if not pair_head:
        return None
    width = max(len(g) for g in group_lists)
    members = torch.full((len(group_lists), width), -1, dtype=torch.long)
    for g, ids in enumerate(group_lists):
        members[g, : len(ids)] = torch.tensor(ids)
    context_width = max(1, max(len(c) for c in pair_contexts))
    no_context = len(context_row)
    pair_context_ids = torch.full((len(pair_contexts), context_width), no_context, dtype=torch.long)
    pair_context_mask = torch.zeros((len(pair_contexts), context_width), dtype=torch.bool)
    for p, ids in enumerate(pair_contexts):
        if ids:
            pair_context_ids[p, : len(ids)] = torch.tensor(ids)
            pair_context_mask[p, : len(ids)] = True
        else:
            pair_context_mask[p, 0] = True
    long = torch.long
    return PairBatch(
        mention_row=torch.tensor(mention_row, dtype=long),
        mention_start=torch.tensor(mention_start, dtype=long),
        mention_end=torch.tensor(mention_end, dtype=long),
        group_members=members,
        group_mask=members >= 0,
        context_row=torch.tensor(context_row, dtype=long),
        context_start=torch.tensor(context_start, dtype=long),
        context_end=torch.tensor(context_end, dtype=long),
        pair_contexts=pair_context_ids,
        pair_context_mask=pair_context_mask,
        pair_head=torch.tensor(pair_head, dtype=long),
        pair_tail=torch.tensor(pair_tail, dtype=long),
        head_type=torch.tensor(head_type, dtype=long),
        tail_type=torch.tensor(tail_type, dtype=long),
        features=torch.tensor(features, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.float32) if labels else None,
        pair_owner=owner,
    )


