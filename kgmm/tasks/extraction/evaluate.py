"""Evaluation: entity and relation scores, the BC5CDR CID resolution, the untrained spaCy baseline, and
:func:`evaluate_extraction`."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgmm.errors import KgmmError
from kgmm.schema import normalize_name
from kgmm.tasks.extraction.data import (
    GroupKey,
    PredictedEntity,
    PredictedRelation,
    Prediction,
    Span,
    _check_dataset,
    _group_key,
    split_sentences,
)
from kgmm.tasks.extraction.predict import ExtractionModel, load_extraction_model
from kgmm.tasks.metrics import PRF, match_counts

if TYPE_CHECKING:
    from kgmm.sources.bc5cdr import PubtatorDoc

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
    """Exact ``(start, end, type)`` matching per text, micro-averaged, with a per-type breakdown.

    Args:
        gold (list[list[Span]]): gold spans of each text.
        predicted (list[list[Span]]): predicted spans of each text, in the same order.

    Returns:
        tuple: ``(micro PRF, {entity type: PRF})``.
    """
    gold_items = [(i, *span) for i, spans in enumerate(gold) for span in spans]
    predicted_items = [(i, *span) for i, spans in enumerate(predicted) for span in spans]
    return _by_type(gold_items, predicted_items, lambda item: item[3])


def score_text_entities(
    gold: Sequence[Sequence[tuple[str, str]]], predicted: Sequence[Sequence[tuple[str, str]]]
) -> tuple[PRF, dict[str, PRF]]:
    """``(normalised text, type)`` multiset matching per text, with a per-type breakdown.

    Args:
        gold (list[list[tuple[str, str]]]): gold ``(text, type)`` of each text.
        predicted (list[list[tuple[str, str]]]): predicted ``(text, type)`` of each text, in the same order.

    Returns:
        tuple: ``(micro PRF, {entity type: PRF})``.
    """
    gold_items = [(i, normalize_name(t), ty) for i, items in enumerate(gold) for t, ty in items]
    predicted_items = [(i, normalize_name(t), ty) for i, items in enumerate(predicted) for t, ty in items]
    return _by_type(gold_items, predicted_items, lambda item: item[2])


def score_text_triples(
    gold: Sequence[Sequence[tuple[str, str, str]]], predicted: Sequence[Sequence[tuple[str, str, str]]]
) -> tuple[PRF, dict[str, PRF]]:
    """``(normalised head, relation, normalised tail)`` multiset matching per text, per relation type.

    Args:
        gold (list[list[tuple[str, str, str]]]): gold ``(head, relation, tail)`` texts of each text.
        predicted (list[list[tuple[str, str, str]]]): predicted triples of each text, in the same order.

    Returns:
        tuple: ``(micro PRF, {relation type: PRF})``.
    """
    def items(triples):
        return [(i, normalize_name(h), r, normalize_name(t)) for i, ts in enumerate(triples) for h, r, t in ts]

    return _by_type(items(gold), items(predicted), lambda item: item[2])


def resolve_cid_pairs(doc: PubtatorDoc, predicted: Sequence[tuple[str, str]]) -> set[tuple]:
    """Map predicted ``(chemical text, disease text)`` pairs of ``doc`` to deduplicated keys.

    A text resolves to the MeSH ids of the gold mentions of that type whose normalised surface form
    equals its normalised form. A pair whose id combinations include gold CID pairs becomes those
    ``(chemical id, disease id)`` pairs; any other pair becomes one key of its resolved id sets (or its
    normalised text where unresolved), so it counts once as a false positive.

    Args:
        doc (PubtatorDoc): the document, with its gold mentions and CID pairs.
        predicted (list[tuple[str, str]]): predicted ``(chemical text, disease text)`` pairs.

    Returns:
        set[tuple]: gold ``(chemical id, disease id)`` pairs hit, plus one key per unmatched prediction.
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
    """Document-level CID scoring: resolved predicted pairs against each document's gold id pairs.

    Args:
        docs (list[PubtatorDoc]): the documents.
        predicted (list[list[tuple[str, str]]]): predicted ``(chemical text, disease text)`` pairs per document.
    """
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
        from kgmm.extract.pipeline import load_statistical_pipeline

        self.nlp = load_statistical_pipeline(disable=["tagger", "parser", "attribute_ruler", "lemmatizer"])

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
