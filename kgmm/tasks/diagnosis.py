"""Diagnosis-style prediction: train, evaluate, predict and explain from a case and the graph.

A case (:class:`kgmm.sources.cases.Case`) has findings present and absent, free text, maybe an image.
Free text is read by the domain's lexicon (spaCy + negation): a mentioned finding is present, a negated one
("no fever") absent; with a text modality the text is also encoded by MiniLM. The model
(:class:`kgmm.nn.diagnosis.DiagnosisNet`) adds graph evidence over the label -> finding graph to a fusion
strategy over the case's modalities, and a temperature fitted on held-back cases calibrates it.

The label -> finding graph comes from a knowledge file (DDXPlus ``release_conditions.json``, or kgmm's own
``knowledge.json``), or, when there is none, from the training cases themselves: a finding joins a label when
it is reported in enough of the label's cases and far more often than elsewhere (``OBSERVED_IN_CASES``).

With no labelled cases at all, :meth:`DiagnosisModel.from_knowledge` ranks labels by the graph alone
(knowledge-only mode): the same graph-evidence module with its prior weights.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from kgmm.domains.knowledge import load_knowledge
from kgmm.errors import SourceError, ValidationError
from kgmm.schema import normalize_name
from kgmm.sources.cases import KNOWLEDGE_FILE, Case, LabelKnowledge, read_cases
from kgmm.tasks.checkpoint import CONFIG_FILE, read_model_config
from kgmm.tasks.metrics import macro_f1
from kgmm.utils import batched, shorten

KIND = "kgmm-diagnosis-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "weights.pt"
TRAIN_HINT = ("train one with: kgmm train diagnosis --dataset ddxplus|symptom2disease|jsonl --path FILE --out DIR, "
              "or rank from a graph alone with --knowledge FILE")
CASE_RELATION = "OBSERVED_IN_CASES"
TEXT_RELATION = "DESCRIBED_WITH"
DEFAULT_DOMAIN = {"ddxplus": "medical", "symptom2disease": "medical", "fashion": "retail", "medpix": "medical",
                  "jsonl": "medical"}
ECE_BINS = 15


def case_knowledge(cases: Sequence[Case], *, min_count: int = 2, min_share: float = 0.15,
                   min_lift: float = 3.0) -> LabelKnowledge:
    """Label -> finding edges observed in labelled ``cases`` (``OBSERVED_IN_CASES``).

    A finding joins a label when at least ``min_count`` and ``min_share`` of the label's cases report it
    present, and it is at least ``min_lift`` times as common in them as in all cases.
    """
    per_label: dict[str, Counter] = defaultdict(Counter)
    sizes: Counter = Counter()
    overall: Counter = Counter()
    for case in cases:
        if case.label is None:
            continue
        sizes[case.label] += 1
        for finding in set(case.present):
            per_label[case.label][finding] += 1
            overall[finding] += 1
    total = sum(sizes.values())
    # With L labels a finding can be at most L times as common in one label's cases: ask for half that at most.
    min_lift = min(min_lift, 1.0 + (len(sizes) - 1) / 2)
    knowledge = LabelKnowledge(source="training cases")
    for label, size in sizes.items():
        edges = {}
        for finding, count in per_label[label].items():
            share = count / size
            if count >= min(min_count, size) and share >= min_share and share / (overall[finding] / total) >= min_lift:
                edges[finding] = CASE_RELATION
        knowledge.edges[label] = edges
    return knowledge


def store_knowledge(store, *, domain: str = "medical") -> LabelKnowledge:
    """Condition -> finding edges of a graph store, with the ids of the documents behind each.

    Two kinds: every stored relation between an entity of the pack's ``condition_types`` (the labels, by name) and
    one of its ``finding_types``, either way round; and, for a document whose title names a condition it
    mentions (a description of that disease), every finding it mentions (``DESCRIBED_WITH``).

    Raises:
        DomainError: the pack names no condition or finding types.
        SourceError: the store links no condition to a finding.
    """
    from kgmm.domains import load_domain
    from kgmm.errors import DomainError

    pack = load_domain(domain)
    if not pack.condition_types or not pack.finding_types:
        raise DomainError(f"the {pack.name!r} pack names no condition_types and finding_types, so a store's graph "
                          "cannot rank diagnoses; add both to its pack.json (medical: Disease; Symptom, Finding)")
    kinds = {entity.id: (entity.name, entity.type) for entity in store.iter_entities()}
    knowledge = LabelKnowledge(source=str(getattr(store, "uri", store)))
    for relation in store.iter_relations():
        pair = _condition_and_finding(kinds, relation.head, relation.tail, pack)
        if pair is not None:
            _add_edge(knowledge, kinds, *pair, relation.type, relation.sources)
    for condition, finding, source_id in _described_with(store, kinds, pack):
        _add_edge(knowledge, kinds, condition, finding, TEXT_RELATION, [source_id])
    if not knowledge.edges:
        raise SourceError(f"links no {'/'.join(pack.condition_types)} to a {'/'.join(pack.finding_types)}; ingest "
                          "texts that state them (e.g. disease descriptions)", path=knowledge.source)
    return knowledge


def _add_edge(knowledge: LabelKnowledge, kinds: dict, condition: str, finding: str, relation: str,
              sources: Sequence[str]) -> None:
    label = kinds[condition][0]
    knowledge.label_ids.setdefault(label, condition)
    knowledge.edges.setdefault(label, {}).setdefault(finding, relation)
    knowledge.finding_names[finding] = kinds[finding][0]
    cited = knowledge.edge_sources.setdefault(label, {}).setdefault(finding, [])
    cited.extend(source for source in sources if source not in cited)


def _described_with(store, kinds: dict, pack) -> list[tuple[str, str, str]]:
    """(condition, entity, source) for each document whose title names a condition it mentions (the most
    specific one: most words, all in the title; an entity of the pack's finding types counts too, since a
    lexicon may file a condition such as an aneurysm under them), and each other entity it states, of any type,
    not negated: a description of a disease names its findings, its sites, the tests that show it and the
    conditions it is told apart from."""
    stated: dict[str, set[str]] = defaultdict(set)
    negated: dict[str, set[str]] = defaultdict(set)
    for mention in store.iter_mentions():
        if mention.entity_id in kinds:
            (negated if mention.negated else stated)[mention.source_id].add(mention.entity_id)
    describable = (*pack.condition_types, *pack.finding_types)
    found = []
    for source in store.iter_sources():
        title = normalize_name(source.title or "")
        entities = stated.get(source.id, set()) - negated.get(source.id, set())
        named = sorted((-len(normalize_name(kinds[e][0]).split()), kinds[e][1] not in pack.condition_types,
                        _first_word_at(title, kinds[e][0]), e)
                       for e in entities if kinds[e][1] in describable and title_names(title, kinds[e][0]))
        if not title or not named or (len(named) > 1 and named[0][:3] == named[1][:3]):
            continue  # no condition in the title, or two alike: not a description of one
        subject = named[0][3]
        found += [(subject, e, source.id) for e in sorted(entities)]
    return found


def _first_word_at(title: str, name: str) -> int:
    """Where the first of ``name``'s words stands in a normalised ``title``: a title is about what it names first
    ("Dacryocystocele with dacryocystitis" is about a dacryocystocele)."""
    words = title.split()
    return min(words.index(word) for word in normalize_name(name).split())


def title_names(title: str, name: str) -> bool:
    """Whether a document's (normalised) title names an entity: the same words, or the entity's words all in it."""
    key = normalize_name(name)
    return bool(key) and (key == title or set(key.split()) <= set(title.split()))


def _condition_and_finding(kinds: dict, head: str, tail: str, pack) -> tuple[str, str] | None:
    head_type, tail_type = kinds.get(head, ("", ""))[1], kinds.get(tail, ("", ""))[1]
    if head_type in pack.condition_types and tail_type in pack.finding_types:
        return head, tail
    if tail_type in pack.condition_types and head_type in pack.finding_types:
        return tail, head
    return None


def text_knowledge(label_texts: dict[str, str], *, domain: str = "medical", source: str = "texts") -> LabelKnowledge:
    """Label -> finding edges read from a text about each label (a disease's description): the findings the
    domain's lexicon finds stated, not negated, in it (``DESCRIBED_WITH``)."""
    reader = FindingReader(domain)
    labels = list(label_texts)
    knowledge = LabelKnowledge(source=source)
    for label, (present, _, names, _) in zip(labels, reader.read([label_texts[label] for label in labels]), strict=True):
        knowledge.edges[label] = {finding: TEXT_RELATION for finding in present if finding in names}
        knowledge.finding_names.update(names)
    return knowledge


@functools.lru_cache(maxsize=4)
def _extractor(domain: str):
    """One extractor per domain and process (spaCy and the lexicon take seconds to load)."""
    from kgmm.extract.pipeline import Extractor

    return Extractor(domain)


MEMO_SIZE = 50_000  # texts remembered per process (read and encoded once across the runs of a learning curve)
_TEXT_MEMO: dict[str, dict] = {}


@functools.lru_cache(maxsize=2)
def _text_encoder(path: str | None):
    from kgmm.nn.text import TextEncoder

    return TextEncoder(path)


class FindingReader:
    """Free text -> (present, absent) finding ids and their names, with a domain pack's lexicon and negation."""

    def __init__(self, domain: str = "medical") -> None:
        self.domain = domain
        self.extractor = _extractor(domain)
        self._memo: dict[str, tuple] = {}  # text -> what was read (learning curves read the same texts again)

    def read(self, texts: Sequence[str]) -> list[tuple[list[str], list[str], dict[str, str], dict[str, list[str]]]]:
        """Per text: ``(present ids, absent ids, id -> name, id -> cross-referenced ids)``.

        A finding both stated and negated in one text counts as absent. The cross-references
        (``HP:0012735`` -> ``DDXPLUS:E_201``) let a model whose findings come from another lexicon match it.
        """
        from kgmm.schema import Source

        todo = list(dict.fromkeys(text for text in texts if text not in self._memo))
        sources = [Source.document(text or " ", "diagnosis", key=f"{i}:{text}") for i, text in enumerate(todo)]
        for text, extraction in zip(todo, self.extractor.extract(sources), strict=True):
            names = {entity.id: entity.name for entity in extraction.entities}
            crossrefs = {entity.id: list(entity.ontology_ids) for entity in extraction.entities if entity.ontology_ids}
            present, absent = {}, {}
            for mention in extraction.mentions:
                (absent if mention.negated else present)[mention.entity_id] = None
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[text] = ([f for f in present if f not in absent], list(absent), names, crossrefs)
        return [self._memo[text] for text in texts]


def read_case_text(cases: Sequence[Case], reader: FindingReader, names: dict[str, str],
                   vocabulary: dict[str, int] | None = None) -> list[Case]:
    """``cases`` with the findings ``reader`` finds in their text merged in (a negated one as absent, and a
    finding the case lists as absent never turned present); the names of the findings read go to ``names``.
    With a ``vocabulary``, a finding it lacks is replaced by the first of its cross-references it has."""
    with_text = [i for i, case in enumerate(cases) if case.text.strip()]
    out = list(cases)
    if not with_text:
        return out
    read = reader.read([cases[i].text for i in with_text])
    for i, (present, absent, found, crossrefs) in zip(with_text, read, strict=True):

        def known(finding: str, crossrefs=crossrefs) -> str:
            if vocabulary is None or finding in vocabulary:
                return finding
            return next((ref for ref in crossrefs.get(finding, []) if ref in vocabulary), finding)

        for finding, name in found.items():
            names.setdefault(known(finding), name)
        case = cases[i]
        absent = [known(f) for f in absent]
        known_absent = set(case.absent) | set(absent)
        merged = list(dict.fromkeys([*case.present, *(known(f) for f in present if known(f) not in known_absent)]))
        out[i] = Case(case.id, case.label, merged, list(dict.fromkeys([*case.absent, *absent])), case.text,
                      case.image, case.attributes, case.closed_world, case.line)
    return out


@dataclass
class Features:
    """Tensors of a batch of cases."""

    present: object
    absent: object
    features: dict
    masks: dict


class DiagnosisModel:
    """A trained (or knowledge-only) diagnosis model: featurize cases, predict, explain.

    Build one with :meth:`load`, :meth:`from_knowledge` or :func:`train_diagnosis`.
    """

    def __init__(self, config: dict, knowledge: LabelKnowledge, state: dict | None = None) -> None:
        import torch

        from kgmm.nn.diagnosis import DiagnosisNet, graph_edges

        self.config = config
        self.knowledge = knowledge
        self.labels: list[str] = list(config["labels"])
        self.findings: list[str] = list(config["findings"])
        self.relations: list[str] = list(config["relations"])
        self.label_index = {label: i for i, label in enumerate(self.labels)}
        self.finding_index = {finding: i for i, finding in enumerate(self.findings)}
        self.finding_names: dict[str, str] = {**config.get("finding_names", {}), **knowledge.finding_names}
        relation_index = {relation: i for i, relation in enumerate(self.relations)}
        triples = [(self.label_index[label], self.finding_index[finding], relation_index[relation])
                   for label, edges in knowledge.edges.items() if label in self.label_index
                   for finding, relation in edges.items() if finding in self.finding_index]
        self.linked = sorted({f for _, f, _ in triples})
        dims = {m: int(d) for m, d in config.get("modalities", {}).items()}
        self.net = DiagnosisNet(dims, len(self.labels), graph_edges(triples), len(self.findings),
                                len(self.relations), fusion=config.get("fusion", "early-concat"),
                                use_graph=config.get("use_graph", True),
                                specificity=bool(config.get("knowledge_only", False)),
                                hidden_channels=int(config.get("hidden_channels", 128)),
                                dropout=float(config.get("dropout", 0.2)),
                                modality_dropout=float(config.get("modality_dropout", 0.0)))
        if state is not None:
            self.net.load_state_dict(state)
        self.net.eval()
        self.temperature = float(config.get("temperature", 1.0))
        self._reader: FindingReader | None = None
        self._text = None
        self._torch = torch

    @classmethod
    def from_knowledge(cls, knowledge: LabelKnowledge, *, domain: str = "medical") -> DiagnosisModel:
        """The knowledge-only model: the graph alone, with its prior weights (no labelled case needed)."""
        findings = sorted({f for edges in knowledge.edges.values() for f in edges})
        relations = sorted({r for edges in knowledge.edges.values() for r in edges.values()}) or [CASE_RELATION]
        config = {"kind": KIND, "format_version": FORMAT_VERSION, "labels": knowledge.labels, "findings": findings,
                  "relations": relations, "modalities": {}, "use_graph": True, "domain": domain,
                  "knowledge_only": True, "temperature": 1.0}
        return cls(config, knowledge)

    @classmethod
    def load(cls, model_dir: str | Path) -> DiagnosisModel:
        """Load a model written by :func:`train_diagnosis`.

        Raises:
            SourceError: when ``model_dir`` holds no diagnosis model (the message says how to train one).
        """
        import torch

        model_dir = Path(model_dir)
        config = read_model_config(model_dir, kind=KIND, max_format=FORMAT_VERSION, what="a diagnosis model",
                                   fix=TRAIN_HINT)
        knowledge = load_knowledge(model_dir / KNOWLEDGE_FILE)
        try:
            state = torch.load(model_dir / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as e:
            raise SourceError(f"cannot read the model weights ({e}); {TRAIN_HINT}", path=str(model_dir)) from e
        model = cls(config, knowledge, state)
        model.config["path"] = str(model_dir)
        return model

    def save(self, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        self._torch.save(self.net.state_dict(), model_dir / WEIGHTS_FILE)
        (model_dir / KNOWLEDGE_FILE).write_text(json.dumps(self.knowledge.to_json(), indent=1), encoding="utf-8")
        config = {k: v for k, v in self.config.items() if k != "path"}
        config["temperature"] = self.temperature
        (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")

    @property
    def modalities(self) -> dict[str, int]:
        return dict(self.config.get("modalities", {}))

    def reader(self) -> FindingReader:
        if self._reader is None:
            self._reader = FindingReader(self.config.get("domain", "medical"))
        return self._reader

    def read_text(self, cases: Sequence[Case]) -> list[Case]:
        """Cases with the findings of their text added (present unless negated); cases without text unchanged."""
        if not any(case.text.strip() for case in cases):
            return list(cases)
        return read_case_text(cases, self.reader(), self.finding_names, self.finding_index)

    def featurize(self, cases: Sequence[Case], *, text_states=None, image_states=None) -> Features:
        """Tensors for ``cases`` (their text already read into findings by :meth:`read_text`)."""
        torch = self._torch
        n, width = len(cases), len(self.findings)
        present = torch.zeros(n, width)
        absent = torch.zeros(n, width)
        linked = torch.zeros(width, dtype=torch.bool)
        linked[self.linked] = True
        for row, case in enumerate(cases):
            for finding in case.present:
                if finding in self.finding_index:
                    present[row, self.finding_index[finding]] = 1.0
            for finding in case.absent:
                if finding in self.finding_index:
                    absent[row, self.finding_index[finding]] = 1.0
            if case.closed_world:
                absent[row] = torch.where(linked & (present[row] == 0), 1.0, absent[row])
        features, masks = {}, {}
        dims = self.modalities
        if "findings" in dims:
            findings = present - absent
            extra = torch.tensor([self._attributes(case) for case in cases], dtype=torch.float32).reshape(n, -1)
            features["findings"] = torch.cat([findings, extra], dim=1)
            masks["findings"] = torch.ones(n, dtype=torch.bool)
        if "text" in dims:
            if text_states is None:
                text_states = self.encode_texts([case.text for case in cases])
            features["text"] = text_states
            masks["text"] = torch.tensor([bool(case.text.strip()) for case in cases])
        if "image" in dims:
            if image_states is None:
                image_states, masks["image"] = self.encode_images([case.image for case in cases])
            else:
                masks["image"] = torch.tensor([case.image is not None for case in cases])
            features["image"] = image_states
        return Features(present, absent, features, masks)

    def _attributes(self, case: Case) -> list[float]:
        values = []
        for name in self.config.get("attributes", []):
            if name == "age":
                age = case.attributes.get("age")
                values += [float(age) / 100.0 if age is not None else 0.0, float(age is None)]
            elif name == "sex":
                sex = str(case.attributes.get("sex", "")).upper()[:1]
                values += [float(sex == "M"), float(sex == "F")]
        return values

    def encode_texts(self, texts: Sequence[str]):
        if self._text is None:
            self._text = _text_encoder(self.config.get("text_model"))
        memo = _TEXT_MEMO.setdefault(self._text.fingerprint, {})
        todo = list(dict.fromkeys(text or " " for text in texts if (text or " ") not in memo))
        if todo:
            if len(memo) + len(todo) > MEMO_SIZE:
                memo.clear()
            memo.update(zip(todo, self._text.encode(todo), strict=True))
        return self._torch.stack([memo[text or " "] for text in texts]) if texts else self._torch.zeros(0, self._text.dim)

    def encode_images(self, images: Sequence[str | None]):
        from kgmm.nn.vision import encode_image_files

        torch = self._torch
        mask = torch.tensor([image is not None for image in images])
        states = torch.zeros(len(images), self.modalities["image"])
        given = [i for i, image in enumerate(images) if image is not None]
        if given:
            states[given] = encode_image_files([images[i] for i in given], self.config.get("vision_model"))
        return states, mask

    def logits(self, batch: Features):
        with self._torch.no_grad():
            return self.net(batch.features, batch.present, batch.absent, batch.masks)

    def predict_proba(self, cases: Sequence[Case], *, batch_size: int = 512):
        """``[N, C]`` calibrated probabilities for ``cases`` (their text read into findings first)."""
        torch = self._torch
        cases = self.read_text(cases)
        out = []
        for chunk in batched(cases, batch_size):
            batch = self.featurize(chunk)
            out.append(torch.softmax(self.logits(batch) / self.temperature, dim=1))
        return torch.cat(out) if out else torch.zeros(0, len(self.labels))

    def diagnose(self, case: Case, *, top_k: int = 5, evidence: int = 5, rank_anyway: bool = False) -> dict:
        """The top-``top_k`` labels of one case, each with its probability and graph evidence.

        A case with nothing the model reads (no finding it knows, present or absent; no text or image for a model
        that reads them) gets no ranking, only the ``reason``, unless ``rank_anyway``: the ranking would be the
        prior alone.

        Returns:
            ``{"case": {"present", "absent", "unknown"}, "diagnoses": [{"label", "probability", "graph_score",
            "supports": [{"finding", "name", "relation", "weight"}], "against": [...]}], "model", "warnings",
            "reason"}``
        """
        torch = self._torch
        unknown = [f for f in [*case.present, *case.absent] if f not in self.finding_index]
        warnings = []
        if case.image is not None and "image" not in self.modalities:
            warnings.append("this model was not trained with images; the image was not used")
        if case.image is not None and "image" in self.modalities:
            from kgmm.nn.vision import load_image

            load_image(case.image)  # a missing or broken image: an error naming it, before any work
        case = self.read_text([case])[0]
        reason = self._nothing_to_rank(case)
        if reason is not None and not rank_anyway:
            return {"case": self._observed(case, unknown), "diagnoses": [], "reason": reason,
                    "model": self.config.get("path", "knowledge-only"), "warnings": warnings}
        if reason is not None:
            warnings.append(f"{reason}: the ranking below is the prior alone")
        batch = self.featurize([case])
        probabilities = torch.softmax(self.logits(batch) / self.temperature, dim=1)[0]
        support = cost = None
        if self.net.graph is not None:
            with torch.no_grad():
                support, cost = self.net.graph.contributions(batch.present, batch.absent)
            support, cost = support[0], cost[0]
        top = torch.topk(probabilities, min(top_k, len(self.labels)))
        diagnoses = []
        edges = self.net.graph.edges if self.net.graph is not None else None
        for probability, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            entry = {"label": self.labels[index], "probability": round(probability, 4), "supports": [], "against": []}
            if edges is not None:
                mine = (edges[0] == index).nonzero().flatten()
                entry["graph_score"] = round(float(support[mine].sum() - cost[mine].sum()), 3)
                for key, values in (("supports", support), ("against", cost)):
                    ranked = sorted(((float(values[e]), int(e)) for e in mine.tolist() if values[e] > 0), reverse=True)
                    entry[key] = [self._evidence(edges, e, weight) for weight, e in ranked[:evidence]]
            diagnoses.append(entry)
        return {"case": self._observed(case, unknown), "diagnoses": diagnoses, "reason": None,
                "model": self.config.get("path", "knowledge-only"), "warnings": warnings}

    def _observed(self, case: Case, unknown: list[str]) -> dict:
        return {
            "present": [self._named(f) for f in case.present if f in self.finding_index],
            "absent": [self._named(f) for f in case.absent if f in self.finding_index],
            "unknown": unknown,
        }

    def _nothing_to_rank(self, case: Case) -> str | None:
        """Why the model has nothing to rank ``case`` by (no known finding, no text or image it reads), or None."""
        if any(f in self.finding_index for f in [*case.present, *case.absent]):
            return None
        if ("text" in self.modalities and case.text.strip()) or ("image" in self.modalities and case.image):
            return None
        said = f"in the text {shorten(case.text, 60)!r} " if case.text.strip() else ""
        return (f"no finding the model knows was recognised {said}(and none given with --findings/--absent); "
                "name findings as the graph does (kgmm diagnose --help), or pass --rank-anyway")

    def _named(self, finding: str) -> dict:
        return {"finding": finding, "name": self.finding_names.get(finding, finding)}

    def _evidence(self, edges, e: int, weight: float) -> dict:
        finding = self.findings[int(edges[1, e])]
        found = {**self._named(finding), "relation": self.relations[int(edges[2, e])], "weight": round(weight, 3)}
        sources = self.knowledge.edge_sources.get(self.labels[int(edges[0, e])], {}).get(finding)
        return {**found, "sources": sources} if sources else found

    def resolve_findings(self, names: Sequence[str]) -> list[str]:
        """Finding ids for what a user typed: an id (``DDXPLUS:E_53``), a bare code (``E_53``, ``E_204_@_V_1``)
        or a finding's name, case-insensitive.

        Raises:
            ValidationError: for a finding the model does not know, with the closest known ones.
        """
        by_code: dict[str, str] = {}
        for finding in self.findings:
            by_code.setdefault(finding.lower(), finding)
            by_code.setdefault(finding.split(":", 1)[-1].lower(), finding)
        for finding, name in self.finding_names.items():
            if finding in self.finding_index:
                by_code.setdefault(name.lower(), finding)
        resolved = []
        for raw in names:
            key = raw.strip().replace("_@_", "=").lower()
            if not key:
                continue
            if key in by_code:
                resolved.append(by_code[key])
                continue
            from rapidfuzz import process

            close = [match for match, _, _ in process.extract(key, list(by_code), limit=3)]
            raise ValidationError(f"unknown finding {raw!r}; the model knows {len(self.findings)} findings "
                                  f"(ids like {self.findings[0]!r} or their names); closest: {', '.join(close)}")
        return resolved


def diagnosis_metrics(probabilities, gold: Sequence[int | None], labels: Sequence[str]) -> dict:
    """Top-1/top-3 accuracy, macro-F1 over the labels that occur, expected calibration error (15 bins).

    ``gold`` holds the label index of each case, None for a label the model does not know (counted wrong).
    """
    import torch

    n = len(gold)
    if n == 0:
        raise ValidationError("no labelled case to evaluate")
    top = torch.topk(probabilities, min(3, probabilities.size(1)), dim=1).indices.tolist()
    confidence = probabilities.max(dim=1).values.tolist()
    top1 = [row[0] == g for row, g in zip(top, gold, strict=True)]
    top3 = [g in row for row, g in zip(top, gold, strict=True)]
    ece = 0.0
    for b in range(ECE_BINS):
        low, high = b / ECE_BINS, (b + 1) / ECE_BINS
        members = [i for i, c in enumerate(confidence) if (low < c <= high) or (b == 0 and c == 0)]
        if members:
            accuracy = sum(top1[i] for i in members) / len(members)
            mean_confidence = sum(confidence[i] for i in members) / len(members)
            ece += len(members) / n * abs(accuracy - mean_confidence)
    return {"cases": n, "top1": round(sum(top1) / n, 4), "top3": round(sum(top3) / n, 4),
            "macro_f1": round(macro_f1(gold, [row[0] for row in top]), 4), "ece": round(ece, 4),
            "unknown_labels": sum(g is None for g in gold)}


def _split(cases: list[Case], fraction: float, seed: int) -> tuple[list[Case], list[Case]]:
    """Hold out ``fraction`` of each label's cases (at least one case of a label with three or more)."""
    by_label: dict[str | None, list[Case]] = defaultdict(list)
    for case in cases:
        by_label[case.label].append(case)
    rng = random.Random(seed)
    kept, held = [], []
    for label in sorted(by_label, key=str):
        group = by_label[label][:]
        rng.shuffle(group)
        count = int(round(len(group) * fraction)) if len(group) >= 3 else 0
        if fraction > 0 and len(group) >= 3:
            count = max(1, count)
        held += group[:count]
        kept += group[count:]
    return kept, held


def _write_heldout(cases: Sequence[Case], source: Path, dataset: str, out: Path) -> Path:
    """Write the held-out cases in their own format: the same rows of the source file (and, for DDXPlus, the
    JSON files beside it), so ``kgmm eval diagnosis`` reads them like any other file."""
    import shutil

    folder = out / "heldout"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    lines = source.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    keep = {case.line for case in cases}
    if dataset == "medpix":
        body = [line for number, line in enumerate(lines, start=1) if number in keep]
        for name in ("descriptions_test.jsonl", "images"):
            if (source.parent / name).exists() and not (folder / name).exists():
                (folder / name).symlink_to((source.parent / name).resolve())
    elif dataset == "jsonl":
        body = []
        for number, line in enumerate(lines, start=1):
            if number in keep:
                record = json.loads(line)
                if isinstance(record.get("image"), str) and not Path(record["image"]).is_absolute():
                    record["image"] = str((source.parent / record["image"]).resolve())
                body.append(json.dumps(record) + "\n")
    else:
        import csv
        import io

        rows = list(csv.reader(io.StringIO("".join(lines))))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(rows[0])
        image_at = rows[0].index("image") if dataset == "fashion" and "image" in rows[0] else None
        for number, row in enumerate(rows[1:], start=2):
            if number in keep:
                if image_at is not None and row[image_at] and not Path(row[image_at]).is_absolute():
                    row = [*row[:image_at], str((source.parent / row[image_at]).resolve()), *row[image_at + 1:]]
                writer.writerow(row)
        body = [buffer.getvalue()]
    target.write_text("".join(body), encoding="utf-8")
    if dataset == "ddxplus":
        for name in ("release_evidences.json", "release_conditions.json"):
            if (source.parent / name).is_file():
                shutil.copyfile(source.parent / name, folder / name)
    return target


def train_diagnosis(
    path: str | Path,
    dataset: str,
    out: str | Path,
    *,
    knowledge: str | Path | None = None,
    holdout: float = 0.2,
    fusion: str = "early-concat",
    use_graph: bool = True,
    use_text: bool | None = None,
    epochs: int = 200,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    hidden_channels: int = 128,
    dropout: float = 0.2,
    calibration: float = 0.15,
    domain: str | None = None,
    seed: int = 0,
    per_class: int | None = None,
    target: str | None = None,
    catalogue_per_type: int = 60,
    modality_dropout: float = 0.25,
    label_smoothing: float = 0.0,
    init_from: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Train a diagnosis model on the cases of ``path`` and write it to ``out``.

    Args:
        path: the cases file; dataset: its format (``ddxplus``, ``symptom2disease``, ``jsonl``).
        knowledge: a knowledge file (DDXPlus ``release_conditions.json`` or ``knowledge.json``); default for
            ``ddxplus``: the conditions file beside ``path``; otherwise the graph is built from the cases.
        holdout: share of each label's cases written to ``out/heldout/`` and never trained on.
        fusion: the fusion strategy over the modalities.
        use_graph: add the graph evidence (False: the same model without it, the ablation).
        use_text: encode the text with MiniLM (default: when the cases have text).
        calibration: share of the training cases kept back for early stopping and the temperature.
        per_class: train on at most this many cases of each label (learning curves).
        target: the label column of a ``fashion`` file (default ``articleType``).
        catalogue_per_type: for ``fashion``, up to this many rows per label of ``catalogue.csv`` beside ``path``
            join the training cases as title-only cases (never a product of ``path``; 0: none).
        modality_dropout: while training, drop each modality of a case with this probability (when some cases
            lack a modality), so the model copes with a case that lacks one.
        label_smoothing: of the training loss.
        init_from: a diagnosis model (of this or another domain) whose parameters of the same name and shape
            start this one (the text and image projections and the fusion layers; not the label-specific ones
            when the labels differ): domain adaptation from few labels.

    Returns:
        a summary (sizes, epochs, validation accuracy, temperature, seconds).
    """
    import torch

    started = time.perf_counter()
    path, out = Path(path), Path(out)
    torch.manual_seed(seed)
    target = target or ("articleType" if dataset == "fashion" else None)
    cases = _training_cases(path, dataset, out, target=target, holdout=holdout, seed=seed, per_class=per_class,
                            catalogue_per_type=catalogue_per_type)
    domain = domain or DEFAULT_DOMAIN.get(dataset, "medical")
    cases, reader, names = _read_case_findings(cases, domain)
    known, graph_source = _label_knowledge(knowledge, dataset, path, cases)
    model = _untrained_model(cases, known, reader, names, dataset=dataset, domain=domain, fusion=fusion,
                             graph_source=graph_source, use_graph=use_graph, use_text=use_text,
                             hidden_channels=hidden_channels, dropout=dropout, target=target,
                             modality_dropout=modality_dropout, seed=seed, trained_on=path)
    transferred = _init_from(model, init_from) if init_from is not None else []
    best_epoch, validation = _fit_and_calibrate(model, cases, calibration=calibration, seed=seed, epochs=epochs,
                                                lr=lr, weight_decay=weight_decay, batch_size=batch_size,
                                                label_smoothing=label_smoothing, progress=progress)
    model.save(out)
    summary = _training_summary(model, cases, out=out, init_from=init_from, transferred=transferred,
                                best_epoch=best_epoch, validation=validation, started=started)
    (out / "training.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


@dataclass
class _TrainingCases:
    """A training run's cases: the labelled ones, those trained on, those held out (and the file they were
    written to), and the catalogue's title-only cases that join training (``fashion``)."""

    labelled: list[Case]
    train: list[Case]
    held: list[Case]
    extra: list[Case]
    heldout_file: Path | None


def _training_cases(path: Path, dataset: str, out: Path, *, target: str | None, holdout: float, seed: int,
                    per_class: int | None, catalogue_per_type: int) -> _TrainingCases:
    """Read the cases of ``path``, write ``holdout`` of each label's to ``out/heldout/``, keep at most
    ``per_class`` of each label's others for training and (``fashion``) add catalogue rows."""
    cases = read_cases(path, dataset, target=target)
    labelled = [case for case in cases if case.label]
    if len(labelled) < 2 or len({case.label for case in labelled}) < 2:
        raise ValidationError(f"{path}: needs labelled cases of at least two labels to train, found "
                              f"{len(labelled)} case(s) of {len({c.label for c in labelled})} label(s)")
    train, held = _split(labelled, holdout, seed)
    if per_class is not None:
        by_label: dict[str, list[Case]] = defaultdict(list)
        for case in train:
            by_label[case.label].append(case)
        train = [case for label in sorted(by_label) for case in by_label[label][:per_class]]
    out.mkdir(parents=True, exist_ok=True)
    heldout_file = _write_heldout(held, path, dataset, out) if held else None
    extra = _catalogue_cases(path, cases, train, target, catalogue_per_type, seed) if dataset == "fashion" else []
    return _TrainingCases(labelled, train, held, extra, heldout_file)


def _read_case_findings(cases: _TrainingCases,
                        domain: str) -> tuple[_TrainingCases, FindingReader | None, dict[str, str]]:
    """When the training cases have text, read its findings into the training and catalogue cases; return the
    cases, the reader (None without text) and the names of the findings read."""
    names: dict[str, str] = {}
    if not any(case.text.strip() for case in cases.train):
        return cases, None, names
    reader = FindingReader(domain)
    train = read_case_text(cases.train, reader, names)
    extra = read_case_text(cases.extra, reader, names)
    return replace(cases, train=train, extra=extra), reader, names


def _label_knowledge(knowledge: str | Path | None, dataset: str, path: Path,
                     cases: _TrainingCases) -> tuple[LabelKnowledge, str]:
    """The label -> finding graph, with an entry for every training label, and where it came from: the
    ``knowledge`` file (default for ``ddxplus``: the conditions file beside ``path``), else the training cases."""
    if knowledge is None and dataset == "ddxplus":
        knowledge = path.parent / "release_conditions.json"
    known = load_knowledge(knowledge) if knowledge is not None else case_knowledge([*cases.train, *cases.extra])
    for label in sorted({case.label for case in cases.train} | set(known.edges)):
        known.edges.setdefault(label, {})
    return known, "knowledge" if knowledge is not None else "cases"


def _untrained_model(cases: _TrainingCases, known: LabelKnowledge, reader: FindingReader | None,
                     names: dict[str, str], *, dataset: str, domain: str, fusion: str, graph_source: str,
                     use_graph: bool, use_text: bool | None, hidden_channels: int, dropout: float,
                     target: str | None, modality_dropout: float, seed: int, trained_on: Path) -> DiagnosisModel:
    """A new model over the labels and findings of ``known`` and the cases, reading the modalities the training
    cases have (see :func:`train_diagnosis` for the settings)."""
    cased = [*cases.train, *cases.extra]
    labels = sorted({case.label for case in cases.train} | set(known.edges))
    findings = sorted({f for case in cased for f in (*case.present, *case.absent)}
                      | {f for edges in known.edges.values() for f in edges})
    relations = sorted({r for edges in known.edges.values() for r in edges.values()}) or [CASE_RELATION]
    attributes = [name for name in ("age", "sex") if any(name in case.attributes for case in cases.train)]
    modalities, text_encoder = _modalities(cases.train, len(findings) + 2 * len(attributes), use_text)
    config = {"kind": KIND, "format_version": FORMAT_VERSION, "dataset": dataset, "domain": domain,
              "labels": labels, "findings": findings, "relations": relations, "modalities": modalities,
              "attributes": attributes, "fusion": fusion, "graph_source": graph_source,
              "hidden_channels": hidden_channels, "dropout": dropout, "knowledge_only": False, "target": target,
              "modality_dropout": modality_dropout if _some_lack_a_modality(cased, modalities) else 0.0,
              "finding_names": names, "seed": seed, "trained_on": str(trained_on), "use_graph": use_graph}
    model = DiagnosisModel(config, known)
    model._reader, model._text = reader, text_encoder
    return model


def _modalities(train: Sequence[Case], findings_width: int, use_text: bool | None) -> tuple[dict[str, int], object]:
    """The width of each modality a model of ``train`` reads (text: when ``use_text``, default when the cases have
    text; image: when some case has one), and the text encoder (None without text)."""
    has_text = any(case.text.strip() for case in train)
    use_text = has_text if use_text is None else use_text
    modalities = {"findings": findings_width}
    text_encoder = None
    if use_text:
        text_encoder = _text_encoder(None)
        modalities["text"] = text_encoder.dim
    if any(case.image for case in train):
        from kgmm.nn.vision import vision_encoder

        modalities["image"] = int(vision_encoder().dim)
    return modalities, text_encoder


def _fit_and_calibrate(model: DiagnosisModel, cases: _TrainingCases, *, calibration: float, seed: int, epochs: int,
                       lr: float, weight_decay: float, batch_size: int, label_smoothing: float,
                       progress: bool) -> tuple[int, dict]:
    """Train ``model`` on its training and catalogue cases less the ``calibration`` share (all the training cases
    when that share is empty), which select the epoch and fit the temperature; return the best epoch and the
    calibrated validation metrics."""
    import torch

    fit, val = _split(cases.train, calibration, seed + 1)
    if not val:
        fit, val = cases.train, cases.train
    fit = fit + cases.extra
    batches = {name: model.featurize(group) for name, group in (("fit", fit), ("val", val))}
    gold = {name: torch.tensor([model.label_index[case.label] for case in group])
            for name, group in (("fit", fit), ("val", val))}
    _, best_epoch = _fit(model, batches, gold, epochs=epochs, lr=lr, weight_decay=weight_decay,
                         batch_size=batch_size, label_smoothing=label_smoothing, seed=seed, progress=progress)
    val_logits = model.logits(batches["val"])
    model.temperature = fit_temperature(val_logits, gold["val"])
    val_probabilities = torch.softmax(val_logits / model.temperature, dim=1)
    return best_epoch, diagnosis_metrics(val_probabilities, gold["val"].tolist(), model.labels)


def _training_summary(model: DiagnosisModel, cases: _TrainingCases, *, out: Path, init_from: str | Path | None,
                      transferred: list[str], best_epoch: int, validation: dict, started: float) -> dict:
    """What ``training.json`` says of a trained model: sizes, graph, settings, epoch, temperature, validation."""
    config, graph = model.config, model.net.graph
    return {"out": str(out), "dataset": config["dataset"], "cases": len(cases.labelled), "train": len(cases.train),
            "catalogue_cases": len(cases.extra), "init_from": str(init_from) if init_from else None,
            "transferred_parameters": len(transferred),
            "heldout": len(cases.held), "heldout_file": str(cases.heldout_file) if cases.heldout_file else None,
            "labels": len(model.labels), "findings": len(model.findings),
            "graph_edges": int(graph.edges.size(1)) if graph is not None else 0,
            "graph_source": config["graph_source"], "fusion": config["fusion"],
            "modalities": sorted(config["modalities"]), "best_epoch": best_epoch,
            "temperature": round(model.temperature, 3), "use_graph": config["use_graph"],
            "validation": validation, "seconds": round(time.perf_counter() - started, 1)}


def _fit(model: DiagnosisModel, batches: dict, gold: dict, *, epochs: int, lr: float, weight_decay: float,
         batch_size: int, label_smoothing: float, seed: int, progress: bool) -> tuple[float, int]:
    """Train ``model.net`` on ``batches["fit"]``, keeping the epoch best on ``batches["val"]`` (accuracy, then
    log-likelihood); stop after ``max(10, epochs // 10)`` epochs without progress. Returns (score, epoch)."""
    import torch

    net = model.net
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, best_epoch, waited = -math.inf, None, 0, 0
    patience = max(10, epochs // 10)
    iterator = range(1, epochs + 1)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="training", unit="epoch")
    generator = torch.Generator().manual_seed(seed)
    data = batches["fit"]
    size = data.present.size(0)
    for epoch in iterator:
        net.train()
        order = torch.randperm(size, generator=generator)
        for index in batched(order, batch_size):
            logits = net({m: x[index] for m, x in data.features.items()}, data.present[index], data.absent[index],
                         {m: x[index] for m, x in data.masks.items()})
            loss = torch.nn.functional.cross_entropy(logits, gold["fit"][index], label_smoothing=label_smoothing)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        net.eval()
        val_logits = model.logits(batches["val"])
        score = (val_logits.argmax(1) == gold["val"]).float().mean().item() - \
            1e-3 * torch.nn.functional.cross_entropy(val_logits, gold["val"]).item()
        if score > best:
            best, best_epoch, waited = score, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return best, best_epoch


def _init_from(model: DiagnosisModel, source: str | Path) -> list[str]:
    """Copy into ``model`` every parameter of the model in ``source`` with the same name and shape; return
    their names. The label heads and the findings projection of another domain differ in shape and stay new."""
    other = DiagnosisModel.load(source)
    theirs = other.net.state_dict()
    mine = model.net.state_dict()
    same = [name for name, value in mine.items() if name in theirs and theirs[name].shape == value.shape
            and not name.startswith("graph.") and name != "label_bias"]
    same_labels = other.labels == model.labels
    if not same_labels:
        # With other labels, a tensor whose shape happens to match a label head is still another task's head.
        out_width = len(model.labels)
        same = [name for name in same if not mine[name].shape or mine[name].shape[0] != out_width]
    if not same:
        raise ValidationError(f"{source}: no parameter of that model fits this one (different modalities or "
                              f"widths); train from scratch or start from a model with the same encoders")
    model.net.load_state_dict({**mine, **{name: theirs[name] for name in same}})
    return same


def _some_lack_a_modality(cases: Sequence[Case], modalities: dict) -> bool:
    """Whether some training case lacks a modality others have (then modality dropout teaches the model to
    cope; with every modality always there, it would only blur the model)."""
    lacks_text = "text" in modalities and any(not case.text.strip() for case in cases)
    lacks_image = "image" in modalities and any(case.image is None for case in cases)
    return lacks_text or lacks_image


def _catalogue_cases(path: Path, cases: Sequence[Case], train: Sequence[Case], target: str, per_label: int,
                     seed: int) -> list[Case]:
    """Up to ``per_label`` title-only rows per training label from ``catalogue.csv`` beside ``path``, never a
    product that ``path`` holds (held out or not)."""
    from kgmm.sources.cases import read_catalogue_cases

    catalogue = path.parent / "catalogue.csv"
    if per_label <= 0 or not catalogue.is_file():
        return []
    own = {case.attributes.get("product_id") for case in cases}
    labels = {case.label for case in train}
    by_label: dict[str, list[Case]] = defaultdict(list)
    for case in read_catalogue_cases(catalogue, target):
        if case.label in labels and case.attributes.get("product_id") not in own:
            by_label[case.label].append(case)
    rng = random.Random(seed)
    chosen = []
    for label in sorted(by_label):
        group = by_label[label]
        chosen += rng.sample(group, min(per_label, len(group)))
    return chosen


def fit_temperature(logits, gold, *, prior_sigma: float = 0.5) -> float:
    """The MAP temperature for ``gold``: summed negative log-likelihood plus a log-normal prior centred on 1
    (``log T ~ N(0, prior_sigma)``), so a few validation cases that the model gets all right cannot drive it
    to zero (and make every later mistake a confident one). Clamped to [0.05, 20]."""
    import torch

    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), gold, reduction="sum")
        loss = loss + log_t.pow(2).sum() / (2 * prior_sigma ** 2)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def open_diagnosis_model(model_dir: str | Path | None, knowledge: str | Path | None = None,
                         domain: str = "medical", *, store=None) -> DiagnosisModel:
    """A trained model from ``model_dir``, or the knowledge-only model of ``knowledge`` or of an open ``store``'s
    graph (:func:`store_knowledge`).

    Raises:
        ValidationError: when neither is given (the message says how to get one).
    """
    if model_dir is not None:
        return DiagnosisModel.load(model_dir)
    if store is not None:
        return DiagnosisModel.from_knowledge(store_knowledge(store, domain=domain), domain=domain)
    if knowledge is not None:
        if str(knowledge).endswith(".jsonl"):  # MedPix cases: the graph is read from their disease discussions
            from kgmm.sources.cases import medpix_topics

            return DiagnosisModel.from_knowledge(text_knowledge(medpix_topics(knowledge), domain=domain,
                                                                source=str(knowledge)), domain=domain)
        return DiagnosisModel.from_knowledge(load_knowledge(knowledge), domain=domain)
    raise ValidationError(f"no diagnosis model given: pass --model DIR ({TRAIN_HINT}), --knowledge FILE or --store S")


def evaluate_diagnosis(model: DiagnosisModel, path: str | Path, dataset: str) -> dict:
    """Metrics of ``model`` on the labelled cases of ``path`` (see :func:`diagnosis_metrics`)."""
    cases = [case for case in read_cases(path, dataset, target=model.config.get("target")) if case.label]
    if not cases:
        raise ValidationError(f"{path}: no labelled case to evaluate")
    started = time.perf_counter()
    probabilities = model.predict_proba(cases)
    gold = [model.label_index.get(case.label) for case in cases]
    metrics = diagnosis_metrics(probabilities, gold, model.labels)
    metrics.update({"dataset": dataset, "path": str(path), "model": model.config.get("path", "knowledge-only"),
                    "seconds": round(time.perf_counter() - started, 2)})
    return metrics


__all__ = ["DiagnosisModel", "FindingReader", "case_knowledge", "diagnosis_metrics", "text_knowledge",
           "evaluate_diagnosis", "fit_temperature", "load_knowledge", "open_diagnosis_model", "train_diagnosis"]
