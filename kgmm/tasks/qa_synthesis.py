"""Questions made from the graph itself, so a QA model trains on a graph nobody labelled.

A synthesized question starts at a sampled topic entity, follows a sampled chain of 1 to ``steps`` relations
(each forwards or backwards) and takes every entity the chain reaches as an answer, the way a labelled
question's answers are every entity its facts lead to. Its wording comes from the relation names alone:
``snake_case``, ``camelCase`` and dotted names are split into words (``directed_by`` -> "directed by",
``people.person.placeOfBirth`` -> "place of birth"), their lemmas give a second reading ("direct by"), a domain
pack's trigger words give more, and the words' grammar gives the rest: a passive agent (``directed_by``: "who
directed [X]", "what did [X] direct"), a participle before a noun (``starred_actors``: "who starred in [X]"), a
present-tense verb (``treats``: "what does [X] treat"), a head noun and its question word (``release_year``: "when
was [X] released"). Generic English templates turn them into forward and inverse questions, several per chain,
nested with only the outer step worded as a question ("what genre do the ones directed by [X] have"), and a
relation followed there and back as sharing ("the ones that share actors with [X]"). Nothing here names a data set's
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
_AGENT_FORWARD = ("who {verb} {x}", "the one who {verb} {x}", "what {verb} {x}", "{x} was {verb} by whom",
                  "by whom was {x} {verb}", "the {kind} who {verb} {x}", "{x} was {verb} by who",
                  "{x} were {verb} by which {kinds}")
_AGENT_INVERSE = ("what did {x} {base}", "what was {verb} by {x}", "what {x} {verb}", "the ones {x} {verb}",
                  "which {kinds} did {x} {base}", "what {kinds} were {verb} by {x}", "the {kinds} {verb} by {x}",
                  "{x} {verb} which {kinds}", "{x} {verb} what")
# The agent noun of a passive name ("director" of ``directed_by``): "the director of [X]", "films with director [X]".
_AGENT_NOUN_FORWARD = ("the {agent} of {x}", "who is the {agent} of {x}", "{x} 's {agent}", "which {agent} {verb} {x}",
                       "the {agent} who {verb} {x}", "who was the {agent} of {x}")
_AGENT_NOUN_INVERSE = ("the ones with {agent} {x}", "the {kinds} whose {agent} is {x}", "what has {x} as {agent}",
                       "which {kinds} have {x} as their {agent}", "the {kinds} of {agent} {x}",
                       "what was {x} the {agent} {of}", "which {kinds} was {x} {an} {agent} {of}",
                       "{x} was the {agent} {of} which {kinds}", "the {kinds} {x} was {an} {agent} {of}")
_NOUN_FORWARD = ("what {noun} is {x}", "what {noun} does {x} have", "which {noun} does {x} have", "{x} has what {noun}",
                 "what is the {noun} of {x}", "the {noun} of {x} is what", "the {noun} of {x}", "{x} 's {noun}")
_NOUN_INVERSE = ("what has {noun} {x}", "what has {x} as its {noun}", "which {kinds} have {x} as {noun}",
                 "the ones whose {noun} is {x}", "what is of {noun} {x}", "the {kinds} with {noun} {x}")
_ACT_FORWARD = ("who {verb} in {x}", "which {noun} {verb} in {x}", "who was {verb} in {x}", "the {noun} {verb} in {x}",
                "{x} {verb} who", "{x} {verb} which {noun}")
_ACT_INVERSE = ("what did {x} {base} in", "what was {x} {verb} in", "which {kinds} did {x} {base} in",
                "what has {x} {verb} in", "the {kinds} {x} {verb} in", "{x} {verb} in which {kinds}",
                "{x} {verb} in what")
_DOES_FORWARD = ("what does {x} {base}", "what can {x} {base}", "which {kinds} does {x} {base}", "{x} {verb} what",
                 "the {kinds} {x} {verb}")
_WHEN_FORWARD = ("when was {x} {mod}", "what {noun} was {x} {mod}", "in which {noun} was {x} {mod}", "when is {x} from",
                 "{x} is from which {noun}", "{x} was {mod} in which {noun}", "when were {x} {mod}")
_WHERE_FORWARD = ("where is {x}", "where is {x} from", "in which {noun} is {x}")
_SHARE = ("the ones that share {w} with {x}", "those with the same {w} as {x}", "what shares {w} with {x}",
          "the others with the {w} of {x}")
# From the topic's side, a shared agent or actor said with "also": "the films whose directors also directed [X]"
# inside a question; as the question itself, "the director of [X] also directed which films".
_ALSO = ("the ones whose {agent}s also {past} {x}", "the {kinds} whose {agent} also {past} {x}",
         "those whose {agent}s have also {verb} {x}")
_ALSO_ASKED = ("the {agent} of {x} also {past} which {kinds}", "which {kinds} did the {agent} of {x} also {base}",
               "the {agent} of {x} is also the {agent} of which {kinds}", "what else did the {agent} of {x} {base}")
_TOGETHER = ("who {verb} together with {x}", "who {verb} alongside {x}", "who {verb} with {x}",
             "who else {verb} with {x}", "the ones who {verb} with {x}")
_ASK = ("what is {np}", "what are {np}", "which are {np}", "{np}", "who is {np}", "list {np}", "name {np}",
        "tell me {np}", "what would be {np}", "which ones are {np}")
_THEN_FORWARD = ("then their {w}", "and the {w} of those", "then the {w}")
_THEN_INVERSE = ("then what {w} them", "and whatever has {w} those", "then the ones {w} them")
# Broad words a question may put before its topic or its answers ("the item [X]", "which people ..."): they name
# no relation, so a model learns they add no step. None is a data set's type.
_KINDS = ("thing", "item", "one", "entity", "person", "people", "place", "work", "title", "record", "object",
          "product", "group", "organization", "event", "subject", "case", "name")
_PLURALS = {"person": "people", "people": "people", "entity": "entities", "case": "cases"}
_TIME_NOUNS = frozenset("year date time day month decade century period era".split())
_PLACE_NOUNS = frozenset("place location city country region area site venue address town".split())
_PREPOSITIONS = frozenset("by of in for with on at to from as".split())
_TOPIC = re.compile(r"\[[^\]]*\]")
_QUESTION = re.compile(r"^(?:what|which|who|when|where|in which|by whom)\b|\b(?:what|which|whom)\b|\b(?:who|when)$")


@dataclass(frozen=True)
class RelationReading:
    """The words a relation is asked about by.

    Args:
        relation (str): the relation type.
        phrases (tuple of str): its readings, the split name first ("directed by", "direct by", ...).
        agent_verb (str, optional): for a passive ``<verb>ed_by`` name, the participle ("directed").
        agent_base (str, optional): and its base form ("direct"), for active readings ("what did X direct").
        opaque (bool): the name holds no word (``P31``): it is read by its own name only.
        noun (str, optional): the name's head noun ("actors" of ``starred_actors``, "year" of ``release_year``).
        act_verb (str, optional): a participle before the head noun ("starred"): "who starred in X".
        act_base (str, optional): its base form ("star"): "what did X star in".
        does (str, optional): a present-tense verb name ("treats", "works for"), and ``does_base`` its base
            ("treat"): "what does X treat".
        wh (str): the question word its values take: "when" for a time noun, "where" for a place noun.
        mod (str, optional): with a time or place noun, the participle of the words before it ("released" of
            ``release_year``): "when was X released".
        agent (str, optional): the one who does the verb, singular: "director" of ``directed_by``, "actor" of
            ``starred_actors``: "the director of X", "the films whose actors also starred in X".
    """

    relation: str
    phrases: tuple[str, ...]
    agent_verb: str | None = None
    agent_base: str | None = None
    opaque: bool = False
    noun: str | None = None
    act_verb: str | None = None
    act_base: str | None = None
    does: str | None = None
    does_base: str | None = None
    wh: str = "what"
    mod: str | None = None
    agent: str | None = None


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
    """Return each relation's readings: its words, their lemmas (``lemmatize``: words -> lemmas, e.g. spaCy's),
    its head noun, the verb it names and its ``signal_words`` (a domain pack's trigger words for it)."""
    readings = []
    for relation in relations:
        words = relation_words(relation)
        opaque = not _holds_a_word(words)
        phrase = " ".join(words) if words else str(relation)
        phrases = [phrase] if not opaque else [f"relation {phrase}"]
        lemmas = lemmatize(words) if lemmatize is not None and not opaque else words
        forms = {} if opaque else _word_forms(words, lemmas)
        for variant in (lemmas, _without_lead(words), _without_lead(lemmas), [forms.get("noun") or ""]):
            if variant and " ".join(variant) and " ".join(variant) not in phrases:
                phrases.append(" ".join(variant))
        for word in (signal_words or {}).get(relation, ()):
            word = " ".join(str(word).lower().split())
            if word and word not in phrases:
                phrases.append(word)
        readings.append(RelationReading(relation, tuple(phrases), opaque=opaque, **forms))
    return readings


def _word_forms(words: Sequence[str], lemmas: Sequence[str]) -> dict:
    """The grammatical readings of a relation's words: a passive agent ("directed by"), a participle before a
    noun ("starred actors"), a present-tense verb ("treats", "works for"), the head noun and its question word."""
    forms: dict = {}
    if not words:
        return forms
    if len(lemmas) != len(words):  # the lemmatizer split a word otherwise: read the words as they are
        lemmas = list(words)
    participle = [_is_participle(word, lemma) for word, lemma in zip(words, lemmas, strict=True)]
    if len(words) >= 2 and words[-1] == "by" and participle[-2]:  # "directed by", "written by"
        forms.update(agent_verb=" ".join(words[:-1]), agent_base=" ".join(lemmas[:-1]), agent=_agent_noun(lemmas[-2]))
    elif len(words) <= 3 and words[0] not in _LEADING and words[0] != lemmas[0] and words[0].endswith("s") \
            and all(w in _PREPOSITIONS for w in words[1:]):  # "treats", "works for"
        forms.update(does=" ".join(words), does_base=" ".join([lemmas[0], *words[1:]]))
    content = [i for i, w in enumerate(words) if w not in _PREPOSITIONS and w not in _LEADING]
    if not content or "agent_verb" in forms or "does" in forms:
        return forms
    cut = words.index("of") if "of" in words[1:] else len(words)  # "place of birth": the head is "place"
    heads = [i for i in content if i < cut and not participle[i]]
    if heads:
        head = heads[-1]
        forms["noun"] = words[head]
        if head > 0 and participle[head - 1]:  # "starred actors"
            forms.update(act_verb=words[head - 1], act_base=lemmas[head - 1], agent=lemmas[head])
        noun = lemmas[head]
        forms["wh"] = "when" if noun in _TIME_NOUNS else "where" if noun in _PLACE_NOUNS else "what"
        before = [lemmas[i] for i in content if i < head]
        if forms["wh"] != "what" and len(before) == 1:  # "release year" -> "when was X released"
            forms["mod"] = _participle_of(before[0])
    return forms


def _is_participle(word: str, lemma: str) -> bool:
    """Whether a word reads as a past participle of its lemma ("starred" of "star", "written" of "write")."""
    return word != lemma and word.endswith(("ed", "en", "wn", "rn"))


def _agent_noun(base: str) -> str:
    """The regular noun for one who does ``base`` ("write" -> "writer", "direct" -> "director", "create" ->
    "creator", "found" -> "founder")."""
    if base.endswith("ate"):
        return base[:-1] + "or"
    if base.endswith(("ct", "it")):
        return base + "or"
    return base + ("r" if base.endswith("e") else "er")


def _participle_of(base: str) -> str:
    """A regular past participle ("release" -> "released", "open" -> "opened")."""
    return base + ("d" if base.endswith("e") else "ed")


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
        self.follows = self._follows(bounds, num_keys)

    def _follows(self, bounds, num_keys: int):
        """``[K, K]``: of the entities relation-direction ``k`` reaches, the share that ``j`` leaves: how much a
        chain ``k`` then ``j`` reads as a question about the kind of entity ``k`` gives (on MetaQA, the films of a
        film's director: 1.0), not a walk through an entity that only shares a name with another kind (the films
        tagged with a film's release year: 0.06)."""
        np = self._np
        pairs = np.unique(self.keys)  # the (key, node) pairs present, as key * N + node
        pair_key, pair_node = pairs // self.num_nodes, pairs % self.num_nodes
        follows = np.zeros((num_keys, num_keys))
        reached = np.zeros(self.num_nodes, dtype=bool)
        for k in range(num_keys):
            nodes = np.unique(self.target[bounds[k]:bounds[k + 1]])
            if len(nodes):
                reached[:] = False
                reached[nodes] = True
                follows[k] = np.bincount(pair_key[reached[pair_node]], minlength=num_keys) / len(nodes)
        return follows

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
            key = first if hop == 0 else _next_key(adjacency, frontier, chain[-1], num_keys, rng)
            if key is None:
                break
            chain.append(key)
            frontier = {int(n) for node in frontier for n in adjacency.neighbours(key, node)} - {topic}
            if not frontier or len(frontier) > MAX_FRONTIER:
                break
        if len(chain) == hops and frontier and len(frontier) <= MAX_ANSWERS:
            return topic, chain, sorted(frontier)
    return None


def _next_key(adjacency: _Adjacency, frontier: set[int], previous: int, num_keys: int,
              rng: random.Random) -> int | None:
    """A relation-direction leaving the frontier, chosen by how much it suits what ``previous`` reaches
    (:meth:`_Adjacency._follows`)."""
    sample = rng.sample(sorted(frontier), min(len(frontier), 20))
    keys = adjacency.keys_from(sample, num_keys)
    if not keys:
        return None
    return rng.choices(keys, weights=[adjacency.follows[previous, k] + 1e-6 for k in keys])[0]


def word_chain(topic: str, chain: Sequence[int], readings: Sequence[RelationReading], num_relations: int,
               rng: random.Random) -> str:
    """Word a chain of relation-directions from ``topic`` as a question, nested ("the genre of the films
    directed by [X]") or, for longer chains, now and then in sequence ("the directed by of [X] , then their
    genre"). A relation followed there and back ("the films of the director of [X]") is now and then worded as
    sharing ("the ones that share directed by with [X]")."""
    if rng.random() < 0.25:
        topic = f"the {rng.choice(_KINDS)} {topic}"
    if len(chain) > 1 and rng.random() < 0.3:
        first = _step_phrase(topic, chain[0], readings, num_relations, rng)
        rest = [_then_phrase(key, readings, num_relations, rng) for key in chain[1:]]
        return " , ".join([_ask(first, rng), *rest])
    phrase, position = topic, 0
    while position < len(chain):
        key = chain[position]
        there_and_back = position + 1 < len(chain) and chain[position + 1] == (key + num_relations) % (2 * num_relations)
        if there_and_back and rng.random() < 0.6:
            position += 2
            phrase = _share_phrase(phrase, key, readings, num_relations, rng, outer=position >= len(chain))
            continue
        position += 1
        phrase = _step_phrase(phrase, key, readings, num_relations, rng, outer=position >= len(chain))
    return _ask(phrase, rng)


def _step_phrase(inner: str, key: int, readings: Sequence[RelationReading], num_relations: int,
                 rng: random.Random, outer: bool = True) -> str:
    """One step's wording around ``inner``, from one of the template families its reading allows (a question
    only as the ``outer`` step; inside, a noun phrase: "the films directed by [X]")."""
    reading = readings[key % num_relations]
    families = [(kept, fill) for templates, fill in _families(reading, key < num_relations)
                if (kept := tuple(t for t in templates if outer or not _QUESTION.search(t)))]
    templates, fill = families[rng.randrange(len(families))]
    return rng.choice(templates).format(x=inner, w=rng.choice(reading.phrases), **_kind_words(rng), **fill)


def _kind_words(rng: random.Random) -> dict:
    """A broad kind word, singular and plural ("person", "people"; "item", "items")."""
    kind = rng.choice(_KINDS)
    return {"kind": kind, "kinds": _PLURALS.get(kind, kind if kind.endswith("s") else kind + "s")}


def _families(reading: RelationReading, forward: bool) -> list[tuple[tuple[str, ...], dict]]:
    """The template families a relation-direction can be worded by, each with its filled-in words."""
    families: list[tuple[tuple[str, ...], dict]] = [(_FORWARD if forward else _INVERSE, {})]
    if reading.agent_verb:
        verbs = {"verb": reading.agent_verb, "base": reading.agent_base}
        families += [(_AGENT_FORWARD if forward else _AGENT_INVERSE, verbs)] * 2
    if reading.act_verb:
        verbs = {"verb": reading.act_verb, "base": reading.act_base, "noun": reading.noun}
        families += [(_ACT_FORWARD if forward else _ACT_INVERSE, verbs)] * 2
    if reading.does and forward:
        families.append((_DOES_FORWARD, {"verb": reading.does, "base": reading.does_base}))
    if reading.agent:
        families.append((_AGENT_NOUN_FORWARD if forward else _AGENT_NOUN_INVERSE, _agent_fill(reading)))
    if reading.noun:
        families.append((_NOUN_FORWARD if forward else _NOUN_INVERSE, {"noun": reading.noun}))
    if forward and reading.wh == "when":
        templates = _WHEN_FORWARD if reading.mod else tuple(t for t in _WHEN_FORWARD if "{mod}" not in t)
        families.append((templates, {"noun": reading.noun, "mod": reading.mod}))
    elif forward and reading.wh == "where":
        families.append((_WHERE_FORWARD, {"noun": reading.noun}))
    return families


def _share_phrase(inner: str, key: int, readings: Sequence[RelationReading], num_relations: int,
                  rng: random.Random, outer: bool = True) -> str:
    """A relation followed there and back, worded as sharing its value with ``inner`` (or, for a verb reading
    read from its value side, as doing it together: "who starred together with [X]")."""
    reading = readings[key % num_relations]
    verb = reading.act_verb or reading.agent_verb
    fill = {"verb": verb, "w": rng.choice(reading.phrases), **_kind_words(rng)}
    if key >= num_relations and verb and rng.random() < 0.5:
        templates = _TOGETHER
    elif key < num_relations and reading.agent and rng.random() < 0.5:
        templates, fill = _ALSO_ASKED + _ALSO, {**fill, **_agent_fill(reading)}  # inner: the filter below
    else:
        templates = _SHARE
    templates = [t for t in templates if outer or not _QUESTION.search(t)]
    return rng.choice(templates).format(x=inner, **fill)


def _agent_fill(reading: RelationReading) -> dict:
    """The words of a reading's agent templates: the agent noun, its article and preposition ("a director of",
    "an actor in") and its verb ("directed", "starred in")."""
    verb, base = ((reading.agent_verb, reading.agent_base) if reading.agent_verb
                  else (f"{reading.act_verb} in", f"{reading.act_base} in"))
    regular = verb.split()[0].endswith("ed")  # "directed" is also the past tense; "written" is not
    return {"agent": reading.agent, "verb": verb, "base": base, "past": verb if regular else f"had {verb}",
            "an": "an" if reading.agent[0] in "aeiou" else "a", "of": "of" if reading.agent_verb else "in"}


def _then_phrase(key: int, readings: Sequence[RelationReading], num_relations: int, rng: random.Random) -> str:
    reading = readings[key % num_relations]
    template = rng.choice(_THEN_FORWARD if key < num_relations else _THEN_INVERSE)
    return template.format(w=rng.choice(reading.phrases))


def _ask(phrase: str, rng: random.Random) -> str:
    if _QUESTION.search(_TOPIC.sub(" ", phrase)):  # already a question (a title such as "What Women Want" aside)
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
