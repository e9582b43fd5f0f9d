"""Decoding: BIO tag sets, gold tags on word pieces, constrained Viterbi, and typed character spans."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from kgmm.tasks.extraction.data import Span, _Encoded


def _bio_tags(entity_types: Sequence[str]) -> list[str]:
    return ["O"] + [f"{prefix}-{t}" for t in entity_types for prefix in ("B", "I")]


def _tag_pieces(enc: _Encoded, mentions: Sequence[Span], tag_index: dict[str, int]) -> list[int]:
    """BIO tag ids on word-first pieces; other pieces get -100 (not scored)."""
    tags = [0 if first else -100 for first in enc.word_first]
    for start, end, entity_type in mentions:
        pieces = enc.piece_range(start, end)
        if pieces is None or f"B-{entity_type}" not in tag_index:
            continue
        words = [i for i in range(*pieces) if enc.word_first[i]]
        if not words:  # a mention inside one word: tag that word
            words = [max(i for i in range(pieces[0] + 1) if enc.word_first[i])]
        tags[words[0]] = tag_index[f"B-{entity_type}"]
        for i in words[1:]:
            tags[i] = tag_index[f"I-{entity_type}"]
    return tags


def _viterbi(log_probs: Any, tags: Sequence[str]) -> list[int]:
    """Best BIO sequence for ``log_probs`` [L, T] where I-X only follows B-X or I-X."""
    import numpy as np

    n_tags = len(tags)
    allowed = np.ones((n_tags, n_tags), dtype=bool)
    start_allowed = np.ones(n_tags, dtype=bool)
    for cur, tag in enumerate(tags):
        if tag.startswith("I-"):
            start_allowed[cur] = False
            for prev, prev_tag in enumerate(tags):
                allowed[prev, cur] = prev_tag[2:] == tag[2:] and prev_tag != "O"
    transition = np.where(allowed, 0.0, -1e9)
    score = log_probs[0] + np.where(start_allowed, 0.0, -1e9)
    back = []
    for position in range(1, len(log_probs)):
        candidates = score[:, None] + transition
        back.append(candidates.argmax(axis=0))
        score = candidates.max(axis=0) + log_probs[position]
    best = [int(score.argmax())]
    for pointers in reversed(back):
        best.append(int(pointers[best[-1]]))
    return best[::-1]


def _decode_spans(enc: _Encoded, log_probs: Any, row_offset: int, tags: Sequence[str]) -> list[Span]:
    """Typed character spans of one text from its windows' tag log-probabilities [rows, L, T]."""
    spans: list[Span] = []
    for w, (window_start, window_end) in enumerate(enc.windows):
        pieces = [i for i in range(window_start, window_end) if enc.word_first[i]]
        if not pieces:
            continue
        rows = [i - window_start + 1 for i in pieces]  # +1: [CLS]
        spans.extend(_spans_from_tags(enc, pieces, _viterbi(log_probs[row_offset + w, rows], tags), tags))
    return spans


def _spans_from_tags(enc: _Encoded, pieces: Sequence[int], tag_ids: Sequence[int], tags: Sequence[str]) -> list[Span]:
    """Character spans from tags on the word-first ``pieces``; a span covers whole words."""
    spans, current = [], None
    for piece, tag_id in zip(pieces, tag_ids, strict=True):
        tag = tags[tag_id]
        if tag.startswith("B-") or (tag.startswith("I-") and (current is None or current[2] != tag[2:])):
            if current:
                spans.append(current)
            current = [enc.piece_spans[piece][0], enc.word_end[piece], tag[2:]]
        elif tag.startswith("I-"):
            current[1] = enc.word_end[piece]
        else:
            if current:
                spans.append(current)
            current = None
    if current:
        spans.append(current)
    return [tuple(s) for s in spans]


def _propagate_mentions(text: str, spans: list[Span]) -> list[Span]:
    """Also tag other whole-word occurrences of a predicted surface form, with its type."""
    taken = list(spans)
    surfaces = {text[s:e]: t for s, e, t in sorted(spans, key=lambda x: x[1] - x[0], reverse=True)}
    for surface, entity_type in surfaces.items():
        if len(surface) < 3:
            continue
        for match in re.finditer(r"(?<!\w)" + re.escape(surface) + r"(?!\w)", text):
            s, e = match.span()
            if all(e <= ts or s >= te for ts, te, _ in taken):
                taken.append((s, e, entity_type))
    return taken


