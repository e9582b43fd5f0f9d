"""The trained extractor: :class:`ExtractionModel` (predict, save) and :func:`load_extraction_model`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgmm.errors import ExtractionError
from kgmm.tasks.extraction.data import (
    _SHAPES,
    DATASETS,
    PredictedRelation,
    Prediction,
    Span,
    _collate_windows,
    _encode,
    _Encoded,
    _lexicon_features,
    split_sentences,
)
from kgmm.tasks.extraction.decode import _bio_tags, _decode_spans, _propagate_mentions
from kgmm.tasks.extraction.pairs import _N_PAIR_FEATURES, _build_pairs, _collate_pairs
from kgmm.utils import batched

if TYPE_CHECKING:
    from kgmm.nn.extraction import ExtractionNet

MODEL_KIND = "kgmm-extraction-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


class ExtractionModel:
    """A trained extractor: ``predict(text)`` gives typed entity spans and relations between them."""

    def __init__(self, net: ExtractionNet, tokenizer: Any, config: dict) -> None:
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
        """Word pieces, shapes, sentences and windows of ``text`` (with lexicon flags if the model has a lexicon).

        Args:
            text (str): the text.
            sentence_spans (list[tuple[int, int]], optional): sentence boundaries; split by rule when omitted.
        """
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
        """:meth:`predict` over many texts, batched by length.

        Args:
            texts (list[str]): the texts.
            sentence_spans (list, optional): sentence boundaries per text (``None`` entries are split by rule).
            batch_size (int, optional): texts per forward pass. (default: 8)
            progress (bool, optional): show a progress bar. (default: False)

        Returns:
            list: one ``(entities, relations)`` per text, as :meth:`predict` gives them.
        """
        import torch
        from tqdm.auto import tqdm

        self.net.eval()
        spans_list = list(sentence_spans) if sentence_spans is not None else [None] * len(texts)
        encoded = [self.encode(text, spans) for text, spans in zip(texts, spans_list, strict=True)]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i].piece_ids))
        results: list[Prediction | None] = [None] * len(texts)
        batches = list(batched(order, batch_size))
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
        """Write config, weights (safetensors) and tokenizer into ``out_dir``.

        Args:
            out_dir (Path): the model directory (created if missing).

        Returns:
            Path: ``out_dir``.
        """
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(out_dir / WEIGHTS_FILE))
        self.tokenizer.save_pretrained(str(out_dir / TOKENIZER_DIR))
        (out_dir / CONFIG_FILE).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return out_dir


def load_extraction_model(model_dir: str | Path) -> ExtractionModel:
    """Load a model written by :func:`train_extraction`.

    Args:
        model_dir (Path): the model directory (config.json, model.safetensors, tokenizer/).

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

    net = _new_net(config["encoder_config"], config["entity_types"], config["relation_types"], config.get("lexicon") is not None)
    try:
        net.load_state_dict(load_file(str(weights)))
    except (RuntimeError, OSError) as e:
        raise ExtractionError(f"{weights} does not match its config ({e}); {fix}") from e
    net.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / TOKENIZER_DIR))
    return ExtractionModel(net, tokenizer, config)


def _new_net(encoder_config: dict, entity_types: Sequence[str], relation_types: Sequence[str], lexicon: bool) -> ExtractionNet:
    """A freshly initialised network for these entity and relation types (lexicon flags for the tagger if ``lexicon``)."""
    from kgmm.nn.extraction import ExtractionNet, ExtractionNetConfig

    return ExtractionNet(ExtractionNetConfig(
        encoder_config=encoder_config,
        n_tags=len(_bio_tags(entity_types)),
        n_types=len(entity_types),
        n_relations=len(relation_types),
        n_lexicon=2 * len(entity_types) if lexicon else 0,
        n_shapes=len(_SHAPES),
        n_pair_features=_N_PAIR_FEATURES,
    ))
