"""Questions made from the graph itself, so a QA model trains on a graph nobody labelled.

A synthesized question starts at a sampled topic entity, follows a sampled chain of 1 to ``steps`` relations
(each forwards or backwards) and takes every entity the chain reaches as an answer, the way a labelled
question's answers are every entity its facts lead to. Its wording comes from the relation names alone:
``snake_case``, ``camelCase`` and dotted names are split into words (``directed_by`` -> "directed by",
``people.person.placeOfBirth`` -> "place of birth"), their lemmas give a second reading ("direct by"), a domain
pack's trigger words give more, and generic English templates turn them into forward and inverse questions
("what is the directed by of [X]", "what did [X] direct"), several per chain. Nothing here names a data set's
relations or copies its questions, so the same code serves a movie KG, a medical graph, a product catalogue and
a KG it has never seen. Relation names with no word in them (``P31``, ``r_12``) still train, under a reading of
their own name; a model can tell them apart only through labelled examples, which the caller warns about.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kgmm.sources.questions import Question

MAX_FRONTIER = 300  # a chain whose intermediate set grows past this is resampled (a hub, not a question)
MAX_ANSWERS = 100  # a question with more answers than this is resampled
DEFAULT_QUESTIONS = 24_000  # synthesized questions per model, spread evenly over the hop counts
_ATTEMPTS = 40  # samples tried for one question before giving up on it

_LEADING = frozenset("has have had is are was were be in of for with on at to".split())
_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|[a-z]+|\d+")
_OPAQUE_TOKEN = re.compile(r"^(?:[a-z]|[a-z]?\d+)$")
_NAMESPACE = re.compile(r"[./:#]")

_FORWARD = ("the {w} of {x}", "{x} 's {w}", "the {w} for {x}", "{w} of {x}", "the {w} that {x} has")
_INVERSE = ("what {w} {x}", "the ones {w} {x}", "those with {w} {x}", "what has {w} {x}", "whatever has {w} {x}")
_AGENT_FORWARD = ("who {verb} {x}", "the one who {verb} {x}", "what {verb} {x}")
_AGENT_INVERSE = ("what did {x} {base}", "what was {verb} by {x}", "what {x} {verb}", "the ones {x} {verb}")
_ASK = ("what is {np}", "what are {np}", "which are {np}", "{np}", "who is {np}", "list {np}", "name {np}",
        "tell me {np}", "what would be {np}", "which ones are {np}")
_THEN_FORWARD = ("then their {w}", "and the {w} of those", "then the {w}")
_THEN_INVERSE = ("then what {w} them", "and whatever has {w} those", "then the ones {w} them")


@dataclass(frozen=True)
class RelationReading:
    """The words a relation is asked about by.

    Args:
        relation (str): the relation type.
        phrases (tuple of str): its readings, the split name first ("directed by", "direct by", ...).
        agent_verb (str, optional): for a passive ``<verb>ed_by`` name, the participle ("directed").
        agent_base (str, optional): and its base form ("direct"), for active readings ("what did X direct").
        opaque (bool): the name holds no word (``P31``): it is read by its own name only.
    """

    relation: str
    phrases: tuple[str, ...]
    agent_verb: str | None = None
    agent_base: str | None = None
    opaque: bool = False


def relation_words(name: str) -> list[str]:
    """Split a relation name into lower-case words: the last dotted/slashed part, camelCase and snake_case split
    (``film.film.directed_by`` -> ["directed", "by"]; ``placeOfBirth`` -> ["place", "of", "birth"]). Falls back
    to every part when the last one holds no word."""
    parts = [part for part in _NAMESPACE.split(str(name)) if part]
    for candidate in ([parts[-1]] if parts else []) + [" ".join(parts)]:
        words = [word.lower() for word in _WORD.findall(candidate)]
        if _holds_a_word(words):
            return words
    return [word.lower() for word in _WORD.findall(str(name))]


def is_opaque(name: str) -> bool:
    """Whether a relation name holds no word to ask by (``P31``, ``r_12``, ``R7``)."""
    return not _holds_a_word(relation_words(name))


def _holds_a_word(words: Sequence[str]) -> bool:
    """Whether some token is a word, not a letter or an id (``p``, ``31``, ``r12``)."""
    return any(not _OPAQUE_TOKEN.match(word) for word in words)


def relation_readings(relations: Sequence[str], signal_words: dict[str, Sequence[str]] | None = None,
                      lemmatize=None) -> list[RelationReading]:
    """Return each relation's readings: its words, their lemmas (``lemmatize``: words -> lemmas, e.g. spaCy's)
    and its ``signal_words`` (a domain pack's trigger words for it)."""
    readings = []
    for relation in relations:
        words = relation_words(relation)
        opaque = not _holds_a_word(words)
        phrase = " ".join(words) if words else str(relation)
        phrases = [phrase] if not opaque else [f"relation {phrase}"]
        lemmas = lemmatize(words) if lemmatize is not None and not opaque else words
        for variant in (lemmas, _without_lead(words), _without_lead(lemmas)):
            if variant and " ".join(variant) not in phrases:
                phrases.append(" ".join(variant))
        for word in (signal_words or {}).get(relation, ()):
            word = " ".join(str(word).lower().split())
            if word and word not in phrases:
                phrases.append(word)
        verb = base = None
        if len(words) >= 2 and words[-1] == "by" and not opaque:  # a passive agent: "directed by", "written by"
            verb, base = " ".join(words[:-1]), " ".join(lemmas[:-1])
        readings.append(RelationReading(relation, tuple(phrases), verb, base, opaque))
    return readings


def _without_lead(words: Sequence[str]) -> list[str]:
    """The words without a leading auxiliary or preposition ("has genre" -> "genre"), when more remain."""
    rest = list(words[1:])
    return rest if words and words[0] in _LEADING and len(" ".join(rest)) >= 3 else []


@dataclass
class SynthesizedQuestion:
    """A question made from a chain of relations, with its topic and answer nodes.

    Args:
        question (Question): the wording (topic in ``[brackets]``) and the answers' names.
        topic (int): the topic entity's node.
        answers (list of int): every node the chain reaches from the topic.
        chain (list of int): the steps followed, each a relation index ``r`` (forwards) or ``r + R`` (backwards).
    """

    question: Question
    topic: int
    answers: list[int]
    chain: list[int] = field(default_factory=list)


class _Adjacency:
    """The graph's edges sorted by (relation and direction, source node), for walking chains of facts."""

    def __init__(self, source, target, relation, num_nodes: int, num_keys: int) -> None:
        import numpy as np

        self._np = np
        source, target, relation = (np.asarray(t, dtype=np.int64) for t in (source, target, relation))
        order = np.lexsort((target, source, relation))
        self.target = target[order]
        self.num_nodes = num_nodes
        self.keys = relation[order] * num_nodes + source[order]
        bounds = np.searchsorted(relation[order], np.arange(num_keys + 1))
        sources = source[order]
        self.sources_of = [np.unique(sources[bounds[k]:bounds[k + 1]]) for k in range(num_keys)]

    def neighbours(self, key: int, node: int):
        position = key * self.num_nodes + node
        return self.target[self._np.searchsorted(self.keys, position):self._np.searchsorted(self.keys, position,
                                                                                             side="right")]

    def keys_from(self, nodes: Sequence[int], num_keys: int) -> list[int]:
        """The relation-directions that leave some node of ``nodes``."""
        np = self._np
        positions = (np.arange(num_keys)[:, None] * self.num_nodes + np.asarray(nodes)[None, :]).ravel()
        present = np.searchsorted(self.keys, positions, side="right") > np.searchsorted(self.keys, positions)
        return np.nonzero(present.reshape(num_keys, len(nodes)).any(axis=1))[0].tolist()


def synthesize_questions(graph, relations: Sequence[str], *, steps: int, count: int = DEFAULT_QUESTIONS,
                         seed: int = 0, readings: Sequence[RelationReading] | None = None) -> list[SynthesizedQuestion]:
    """Sample ``count`` questions over ``graph`` (a :class:`kgmm.tasks.qa.QAGraph`), evenly over 1 to ``steps``
    hops, each chain's first step chosen evenly over the relation-directions the graph has.

    Args:
        graph (QAGraph): the graph; its relation vocabulary starts with ``relations``.
        relations (list of str): the model's relation types (``r`` in a chain is ``relations[r]``).
        steps (int): the most hops a question takes.
        count (int, optional): how many questions (default 24,000).
        seed (int, optional): seeds the sampling and the wording (default 0).
        readings (list of RelationReading, optional): default :func:`relation_readings` of ``relations``.
    """
    rng = random.Random(seed)
    num_relations = len(relations)
    walk = graph.graph
    adjacency = _Adjacency(walk.source.tolist(), walk.target.tolist(), walk.relation.tolist(), graph.num_nodes,
                           2 * num_relations)
    readings = list(readings) if readings is not None else relation_readings(relations)
    starts = [key for key in range(2 * num_relations) if len(adjacency.sources_of[key])]
    made: list[SynthesizedQuestion] = []
    if not starts:
        return made
    names = graph.data.entity_names
    for position in range(count):
        hops = 1 + position % steps
        sampled = _sample_chain(adjacency, starts, hops, 2 * num_relations, rng)
        if sampled is None:
            continue
        topic, chain, answers = sampled
        shown = names[topic].replace("[", "(").replace("]", ")").strip()  # brackets mark the topic, so none inside
        if not shown:
            continue
        text = word_chain(f"[{shown}]", chain, readings, num_relations, rng)
        made.append(SynthesizedQuestion(Question(text, [names[topic]], [names[a] for a in answers]), topic,
                                        answers, chain))
    return made


def _sample_chain(adjacency: _Adjacency, starts: list[int], hops: int, num_keys: int,
                  rng: random.Random) -> tuple[int, list[int], list[int]] | None:
    """A topic, a chain of ``hops`` relation-directions from it and the answers it reaches (None after
    ``_ATTEMPTS`` tries that ran into nothing or into too much)."""
    for _ in range(_ATTEMPTS):
        first = rng.choice(starts)
        candidates = adjacency.sources_of[first]
        topic = int(candidates[rng.randrange(len(candidates))])
        frontier, chain = {topic}, []
        for hop in range(hops):
            key = first if hop == 0 else _next_key(adjacency, frontier, num_keys, rng)
            if key is None:
                break
            chain.append(key)
            frontier = {int(n) for node in frontier for n in adjacency.neighbours(key, node)} - {topic}
            if not frontier or len(frontier) > MAX_FRONTIER:
                break
        if len(chain) == hops and frontier and len(frontier) <= MAX_ANSWERS:
            return topic, chain, sorted(frontier)
    return None


def _next_key(adjacency: _Adjacency, frontier: set[int], num_keys: int, rng: random.Random) -> int | None:
    sample = rng.sample(sorted(frontier), min(len(frontier), 20))
    keys = adjacency.keys_from(sample, num_keys)
    return rng.choice(keys) if keys else None


def word_chain(topic: str, chain: Sequence[int], readings: Sequence[RelationReading], num_relations: int,
               rng: random.Random) -> str:
    """Word a chain of relation-directions from ``topic`` as a question, nested ("the genre of the films
    directed by [X]") or, for longer chains, now and then in sequence ("the directed by of [X] , then their
    genre")."""
    if len(chain) > 1 and rng.random() < 0.35:
        first = _step_phrase(topic, chain[0], readings, num_relations, rng)
        rest = [_then_phrase(key, readings, num_relations, rng) for key in chain[1:]]
        return " , ".join([_ask(first, rng), *rest])
    phrase = topic
    for key in chain:
        phrase = _step_phrase(phrase, key, readings, num_relations, rng)
    return _ask(phrase, rng)


def _step_phrase(inner: str, key: int, readings: Sequence[RelationReading], num_relations: int,
                 rng: random.Random) -> str:
    reading = readings[key % num_relations]
    forward = key < num_relations
    if reading.agent_verb and rng.random() < 0.5:
        template = rng.choice(_AGENT_FORWARD if forward else _AGENT_INVERSE)
        return template.format(verb=reading.agent_verb, base=reading.agent_base, x=inner)
    template = rng.choice(_FORWARD if forward else _INVERSE)
    return template.format(w=rng.choice(reading.phrases), x=inner)


def _then_phrase(key: int, readings: Sequence[RelationReading], num_relations: int, rng: random.Random) -> str:
    reading = readings[key % num_relations]
    template = rng.choice(_THEN_FORWARD if key < num_relations else _THEN_INVERSE)
    return template.format(w=rng.choice(reading.phrases))


def _ask(phrase: str, rng: random.Random) -> str:
    if phrase.split(" ", 1)[0] in ("what", "who", "whatever"):
        return phrase
    return rng.choice(_ASK).format(np=phrase)


def spacy_lemmatizer():
    """Return ``words -> lemmas`` by kgmm's offline English spaCy pipeline, or None when it is not installed."""
    from kgmm.errors import ExtractionError
    from kgmm.extract.pipeline import load_statistical_pipeline

    try:
        nlp = load_statistical_pipeline(disable=["ner", "parser"])
    except ExtractionError:
        return None

    def lemmatize(words: Sequence[str]) -> list[str]:
        return [token.lemma_.lower() or token.lower_ for token in nlp(" ".join(words))]

    return lemmatize


def pack_signal_words(relations: Iterable[str]) -> dict[str, list[str]]:
    """The trigger words the built-in domain packs give each of ``relations`` ("treats" for ``TREATS``)."""
    from kgmm.domains import available_domains, load_domain

    wanted = set(relations)
    found: dict[str, list[str]] = {}
    for name in available_domains():
        for rule in load_domain(name).relations:
            if rule.type in wanted:
                words = found.setdefault(rule.type, [])
                words.extend(trigger for trigger in rule.triggers if trigger not in words)
    return found
