"""Extraction data: dataset specs, examples (text, gold mentions, relations), word-piece encoding and windows,
the training lexicon, and the collation of encoded texts into padded encoder rows."""

from __future__ import annotations

import bisect
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgmm.errors import KgmmError
from kgmm.schema import normalize_name

if TYPE_CHECKING:
    from kgmm.sources.bc5cdr import PubtatorDoc

DATASETS = ("bc5cdr", "conll04")

Span = tuple[int, int, str]  # start, end, entity type
PredictedEntity = tuple[int, int, str, str]  # start, end, entity type, text
PredictedRelation = tuple[int, str, int, float]  # head entity index, relation type, tail entity index, confidence
Prediction = tuple[list[PredictedEntity], list[PredictedRelation]]
GroupKey = tuple[str, str]  # entity type, normalised text


@dataclass(frozen=True)
class _DatasetSpec:
    """Per-dataset defaults: where relation candidates are looked for, the schedule, and options.

    ``propagate_mentions`` (tag other occurrences of predicted surface forms) and ``use_lexicon``
    (training-lexicon match flags for the tagger) are off: neither helped on the BC5CDR dev set.
    """

    pair_scope: str  # "document": any two entities of a text; "sentence": entities sharing a sentence
    epochs: int
    batch_examples: int
    max_window: int = 256
    encoder_lr: float = 1e-4
    head_lr: float = 1e-3
    relation_threshold: float = 0.5
    propagate_mentions: bool = False
    use_priors: bool = True
    relation_loss_weight: float = 1.0
    noisy_mentions: bool = True
    relation_encoder_grad: float = 0.1
    use_lexicon: bool = False


_SPECS = {
    "bc5cdr": _DatasetSpec(pair_scope="document", epochs=5, batch_examples=4, encoder_lr=1.5e-4),
    "conll04": _DatasetSpec(pair_scope="sentence", epochs=12, batch_examples=16),
}


def _check_dataset(dataset: str) -> _DatasetSpec:
    if dataset not in _SPECS:
        raise KgmmError(f"no extraction dataset {dataset!r}; available: {', '.join(DATASETS)}")
    return _SPECS[dataset]



@dataclass
class _Example:
    id: str
    text: str
    sentences: list[tuple[int, int]]
    mentions: list[Span]
    relations: set[tuple[GroupKey, str, GroupKey]] = field(default_factory=set)


def _group_key(entity_type: str, text: str) -> GroupKey:
    return (entity_type, normalize_name(text) or text)


def _read_examples(dataset: str, path: Path) -> list[_Example]:
    if dataset == "bc5cdr":
        from kgmm.sources.bc5cdr import read_pubtator

        return [_bc5cdr_example(doc) for doc in read_pubtator(path)]
    from kgmm.sources.conll04 import read_conll04

    examples = []
    for sentence in read_conll04(path):
        mentions = sorted((e.start, e.end, e.type) for e in sentence.entities if e.start is not None)
        type_of = {}
        for entity in sentence.entities:
            type_of.setdefault(entity.text, entity.type)
        relations = {
            (_group_key(type_of[t.head], t.head), t.relation, _group_key(type_of[t.tail], t.tail))
            for t in sentence.triples
            if t.head in type_of and t.tail in type_of
        }
        examples.append(_Example(sentence.id, sentence.text, [(0, len(sentence.text))], mentions, relations))
    return examples


def _bc5cdr_example(doc: PubtatorDoc) -> _Example:
    text = doc.text
    ids_of: dict[GroupKey, set[str]] = defaultdict(set)
    for m in doc.mentions:
        ids_of[_group_key(m.type, m.text)].update(m.ids)
    gold = doc.cid_pairs
    relations = set()
    for head, head_ids in ids_of.items():
        for tail, tail_ids in ids_of.items():
            if any((h, t) in gold for h in head_ids for t in tail_ids):
                relations.add((head, "CID", tail))
    mentions = sorted((m.start, m.end, m.type) for m in doc.mentions)
    return _Example(doc.pmid, text, split_sentences(text), mentions, relations)


_SENTENCE_END = re.compile(r"[.!?](?=\s+[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Split ``text`` into sentence spans ``[(start, end)]`` at ``.``/``!``/``?`` before a capital or digit.

    Args:
        text (str): the text.

    Returns:
        list[tuple[int, int]]: character spans, whitespace trimmed; the whole text when nothing splits it.
    """
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            trimmed.append((s, e))
    return trimmed or [(0, len(text))]



_SHAPES = ("pad", "lower", "capitalised", "upper", "mixed", "digit", "punct", "other")


def _word_shape(piece: str) -> int:
    if any(c.isdigit() for c in piece):
        return 5
    letters = [c for c in piece if c.isalpha()]
    if not letters:
        return 6 if piece and all(not c.isalnum() for c in piece) else 7
    if all(c.islower() for c in letters):
        return 1
    if all(c.isupper() for c in letters):
        return 3 if len(letters) > 1 else 2
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return 2
    return 4


@dataclass
class _Encoded:
    text: str
    piece_ids: list[int]
    piece_spans: list[tuple[int, int]]
    piece_shapes: list[int]
    piece_sentence: list[int]
    word_first: list[bool]  # the piece starts a word (tags are predicted for these pieces only)
    word_end: list[int]  # character end of the word the piece belongs to
    windows: list[tuple[int, int]]  # [start, end) ranges of pieces, each inside max_window
    lexicon: list[list[float]] | None = None  # per piece: training-lexicon match flags (B/I per entity type)

    def piece_range(self, start: int, end: int) -> tuple[int, int] | None:
        """The pieces ``[first, last + 1)`` that overlap characters ``[start, end)``."""
        if not hasattr(self, "_ends"):
            self._ends = [e for _, e in self.piece_spans]
        first = bisect.bisect_right(self._ends, start)
        last = first
        while last < len(self.piece_spans) and self.piece_spans[last][0] < end:
            last += 1
        return (first, last) if last > first else None


def _encode(tokenizer: Any, text: str, sentences: list[tuple[int, int]], max_window: int) -> _Encoded:
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids = list(encoding["input_ids"])
    spans = [tuple(span) for span in encoding["offset_mapping"]]
    word_ids = encoding.word_ids()
    word_first = [i == 0 or word_ids[i] != word_ids[i - 1] for i in range(len(ids))]
    word_start, word_end = [0] * len(ids), [0] * len(ids)
    for i in range(len(ids)):
        word_start[i] = spans[i][0] if word_first[i] else word_start[i - 1]
    for i in reversed(range(len(ids))):
        last_piece = i == len(ids) - 1 or word_first[i + 1]
        word_end[i] = spans[i][1] if last_piece else word_end[i + 1]
    shapes = [_word_shape(text[word_start[i] : word_end[i]]) for i in range(len(ids))]
    sentence_starts = [s for s, _ in sentences]
    piece_sentence = [max(bisect.bisect_right(sentence_starts, s) - 1, 0) for s, _ in spans]
    windows: list[tuple[int, int]] = []
    limit = max_window - 2
    sentence_ranges: list[list[int]] = []
    for i, sid in enumerate(piece_sentence):
        if sentence_ranges and sentence_ranges[-1][2] == sid:
            sentence_ranges[-1][1] = i + 1
        else:
            sentence_ranges.append([i, i + 1, sid])
    for first, last, _ in sentence_ranges:
        for chunk_start in range(first, last, limit):
            chunk = (chunk_start, min(chunk_start + limit, last))
            if windows and chunk[1] - windows[-1][0] <= limit and windows[-1][1] == chunk[0]:
                windows[-1] = (windows[-1][0], chunk[1])
            else:
                windows.append(chunk)
    return _Encoded(text, ids, spans, shapes, piece_sentence, word_first, word_end, windows or [(0, 0)])


_MAX_LEXICON_WORDS = 8


def _word_starts(enc: _Encoded) -> list[int]:
    return [i for i, first in enumerate(enc.word_first) if first]


def _mention_words(enc: _Encoded, mentions: Sequence[Span]) -> list[tuple[str, str]]:
    """``(lower-cased words joined by spaces, type)`` of each mention, words as the tokenizer splits them."""
    out = []
    for start, end, entity_type in mentions:
        words = [enc.text[enc.piece_spans[i][0] : enc.word_end[i]].lower() for i in _word_starts(enc) if start <= enc.piece_spans[i][0] < end]
        if 0 < len(words) <= _MAX_LEXICON_WORDS:
            out.append((" ".join(words), entity_type))
    return out


def _training_lexicon(tokenizer: Any, examples: Sequence[_Example]) -> dict[str, dict[str, int]]:
    """Surface forms annotated in the training texts: words -> {type: number of texts}."""
    lexicon: dict[str, Counter] = defaultdict(Counter)
    for ex in examples:
        enc = _encode(tokenizer, ex.text, ex.sentences, 10**6)
        for key, entity_type in set(_mention_words(enc, ex.mentions)):
            lexicon[key][entity_type] += 1
    return {key: dict(counts) for key, counts in lexicon.items()}


def _lexicon_features(
    enc: _Encoded, lexicon: dict[str, dict[str, int]], entity_types: Sequence[str], own: set[tuple[str, str]] | None = None
) -> list[list[float]]:
    """Per piece, flags [B-type, I-type, ...] for the longest lexicon match starting at each word;
    ``own`` (a training text's own surface forms) is left out so training sees held-out coverage."""
    starts = _word_starts(enc)
    words = [enc.text[enc.piece_spans[i][0] : enc.word_end[i]].lower() for i in starts]
    word_flags = [[0.0] * (2 * len(entity_types)) for _ in starts]
    for w in range(len(starts)):
        for length in range(min(_MAX_LEXICON_WORDS, len(starts) - w), 0, -1):
            counts = lexicon.get(" ".join(words[w : w + length]))
            if not counts:
                continue
            key = " ".join(words[w : w + length])
            found = [t for t, n in counts.items() if n - (1 if own and (key, t) in own else 0) > 0 and t in entity_types]
            for entity_type in found:
                column = 2 * entity_types.index(entity_type)
                word_flags[w][column] = 1.0
                for inside in range(w + 1, w + length):
                    word_flags[inside][column + 1] = 1.0
            if found:
                break
    features, current = [], [0.0] * (2 * len(entity_types))
    word_index = -1
    for i in range(len(enc.piece_ids)):
        if enc.word_first[i]:
            word_index += 1
            current = word_flags[word_index]
        features.append(current)
    return features


def _window_of(enc: _Encoded, first: int, last: int) -> int | None:
    for w, (ws, we) in enumerate(enc.windows):
        if ws <= first and last <= we:
            return w
    return None


def _collate_windows(encoded: list[_Encoded], tags: list[list[int]] | None, pad_id: int, cls_id: int, sep_id: int):
    import torch

    rows, row_offsets, lexicon_rows = [], [], []
    for index, enc in enumerate(encoded):
        row_offsets.append(len(rows))
        for start, end in enc.windows:
            ids = [cls_id, *enc.piece_ids[start:end], sep_id]
            shapes = [0, *enc.piece_shapes[start:end], 0]
            row_tags = [-100, *tags[index][start:end], -100] if tags is not None else None
            rows.append((ids, shapes, row_tags))
            lexicon_rows.append(enc.lexicon[start:end] if enc.lexicon else None)
    length = max(len(r[0]) for r in rows)
    width = next((len(r[0]) for r in lexicon_rows if r), 0)
    lexicon = torch.zeros((len(rows), length, width)) if width else None
    for r, values in enumerate(lexicon_rows):
        if values and lexicon is not None:
            lexicon[r, 1 : len(values) + 1] = torch.tensor(values)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    shape_ids = torch.zeros((len(rows), length), dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    tag_ids = torch.full((len(rows), length), -100, dtype=torch.long)
    for r, (ids, shapes, row_tags) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        shape_ids[r, : len(ids)] = torch.tensor(shapes)
        mask[r, : len(ids)] = 1
        if row_tags is not None:
            tag_ids[r, : len(ids)] = torch.tensor(row_tags)
    return input_ids, mask, shape_ids, tag_ids, row_offsets, lexicon


