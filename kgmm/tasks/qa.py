"""Graph question answering: train, evaluate and ask, with the chain of facts behind every answer.

A question's topic entities are linked to the graph (``[bracketed]`` names are taken as given; otherwise the
longest spans of the question that name an entity, tolerant of case, punctuation, aliases and small typos),
the topic names are masked in the text, the question is encoded by the text encoder (frozen all-MiniLM-L6-v2
token states), and :class:`kgmm.nn.qa.GraphQA` scores every entity by question-conditioned propagation from
the topic entities. One model serves 1-, 2- and 3-hop questions: it learns how many steps each question takes.

Training data is MetaQA's format (``kgmm.sources.questions``): any KB of ``head|relation|tail`` lines and any
questions; nothing here depends on a data set's relation names or wording. A model directory holds
``config.json`` (relation types, settings, what it was trained on and how it scored) and ``model.pt``; the
entities are not part of the model, so it answers over any graph with the same relation types.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kgmm.errors import KgmmError, SourceError, ValidationError
from kgmm.schema import normalize_name
from kgmm.sources.questions import Question, mask_topics, parse_question, read_questions, write_questions
from kgmm.tasks.qa_synthesis import DEFAULT_QUESTIONS, MAX_ANSWERS
from kgmm.utils import batched

KIND = "kgmm-qa-model"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
HELDOUT_DIR = "heldout"
FIX = "train one with `kgmm train qa --kb kb.txt --out DIR` (questions files optional: --train)"
DEFAULT_EPOCHS = 12
SYNTHETIC_EPOCHS = 6  # on synthesized questions alone: their validation Hits@1 levels off by then (MetaQA)
DEFAULT_BATCH_SIZE = 64
DEFAULT_LR = 1e-3
CHAIN_WEIGHT = 0.5  # how much a synthesized question's known chain (its hops, its relations) counts beside its answers
LABELLED_SHARE = 0.2  # labelled questions mixed with synthesized ones are repeated up to this share of the mix
MAX_REPEATS = 20  # ... but no labelled question is seen more than this many times an epoch
PATIENCE = 3  # epochs without a better validation Hits@1 before stopping (never before half the epochs)
ANSWER_THRESHOLD = 0.5  # an entity scoring at least this is in the predicted answer set (for F1)
MAX_SPAN_TOKENS = 10
# how a new model reads its question (GraphQA's reader options); a model's config.json keeps its own, and one
# without them (written before they existed) reads the text encoder's states directly
ARCHITECTURE = {"reader_layers": 1, "relation_feedback": True, "hops_from_steps": True}


class EntityLinker:
    """Find graph entities named in a question.

    Args:
        names (list of str): node index -> entity name.
        aliases (dict of int to list of str, optional): more names per node.
        stop_words (iterable of str, optional): words that never name an entity on their own when a question
            has no [brackets], beside English function words: a QA model's template words (see
            :func:`template_words`).
    """

    def __init__(self, names: Sequence[str], aliases: dict[int, list[str]] | None = None, *,
                 stop_words: Iterable[str] = ()) -> None:
        self._normalize = normalize_name
        self.stop_words = _FUNCTION_WORDS | {normalize_name(word) for word in stop_words}
        self.names = list(names)
        self.index: dict[str, list[int]] = {}
        for node, name in enumerate(self.names):
            self._add(name, node)
        for node, more in (aliases or {}).items():
            for name in more:
                self._add(name, node)
        self._keys = list(self.index)
        self.max_tokens = min(MAX_SPAN_TOKENS, max((key.count(" ") + 1 for key in self._keys), default=1))

    def _add(self, name: str, node: int) -> None:
        key = self._normalize(name or "")
        if key:
            nodes = self.index.setdefault(key, [])
            if node not in nodes:
                nodes.append(node)

    def link(self, name: str, *, fuzzy: bool = True) -> list[int]:
        """Return the nodes named ``name`` (case and punctuation ignored), else the closest name's within a small
        typo (one edit, two for names over 12 characters), else none."""
        key = self._normalize(name)
        if not key:
            return []
        if key in self.index:
            return list(self.index[key])
        if not fuzzy or len(key) < 4:
            return []
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        allowed = 1 if len(key) <= 12 else 2
        match = process.extractOne(key, self._keys, scorer=Levenshtein.distance, score_cutoff=allowed)
        return list(self.index[match[0]]) if match else []

    def find(self, text: str) -> list[tuple[str, list[int]]]:
        """Return ``(span, nodes)`` for the longest non-overlapping spans of ``text`` that exactly name an entity
        (a span of stop words or digits alone is skipped unless it is the whole question's only match)."""
        words = text.replace("?", " ").split()
        found: list[tuple[str, list[int]]] = []
        start = 0
        while start < len(words):
            for length in range(min(self.max_tokens, len(words) - start), 0, -1):
                span = " ".join(words[start:start + length])
                key = self._normalize(span)
                if key in self.index and not (length == 1 and (key in self.stop_words or len(key) < 3)):
                    found.append((span.strip(",;:!\"'"), list(self.index[key])))
                    start += length
                    break
            else:
                start += 1
        return found


_FUNCTION_WORDS = frozenset("""a an and are as at be by did do does for from has have he her his how i in is it its me of
on or she that the their them they this to was what when where which who whom whose why will with you your""".split())
TEMPLATE_WORD_SHARE = 0.01  # a word outside the [topic] in at least 1% of training questions is the template's


def template_words(questions: Sequence[Question]) -> list[str]:
    """Return the words that recur outside the bracketed topics of ``questions`` (in at least 1% of them, and
    in two or more): the wording of the question templates ("films", "directed"), which :class:`EntityLinker`
    then never links as an entity on its own. Learnt from the questions, so no domain's words are built in."""
    counts: Counter[str] = Counter()
    bracketed = [q for q in questions if q.topics]
    for question in bracketed:
        counts.update({normalize_name(word) for word in mask_topics(question.text, " ").split()} - {""})
    least = max(2, TEMPLATE_WORD_SHARE * len(bracketed))
    return sorted(word for word, count in counts.items() if count >= least and " " not in word)


@dataclass
class QAGraph:
    """A knowledge graph ready for question answering.

    Args:
        data: the :class:`kgmm.graphdata.GraphTensors` of the graph (its relation vocabulary starts with the model's).
        graph (RelationGraph): its edges for propagation.
        linker (EntityLinker): its entity names.
        source (str): where it came from (a KB file or a store URI).
        store: the open store it was read from, for the sources of each fact (None for a KB file).
    """

    data: object
    graph: object
    linker: EntityLinker
    source: str
    store: object = None

    @property
    def num_nodes(self) -> int:
        return int(self.data.num_nodes)

    def name(self, node: int) -> str:
        return self.linker.names[node]

    def entity_id(self, node: int) -> str:
        return self.data.entity_vocab.key(node)

    def reachable(self, seeds, hops: int):
        """Nodes within ``hops`` edges of each column's seeds, any relation, either direction.

        Shapes:
            seeds ``[N, B]`` -> ``[N, B]`` bool.
        """
        import torch

        if getattr(self, "_adjacency", None) is None:
            import warnings

            edges = torch.cat([self.data.edge_index, self.data.edge_index.flip(0)], dim=1).unique(dim=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                self._adjacency = torch.sparse_coo_tensor(edges.flip(0), torch.ones(edges.size(1)),
                                                          (self.num_nodes, self.num_nodes)).to_sparse_csr()
        scores = seeds.float()
        reached = torch.zeros_like(scores, dtype=torch.bool)
        with torch.no_grad():
            for _ in range(hops):
                scores = (torch.sparse.mm(self._adjacency, scores) > 0).float()
                reached |= scores.bool()
        return reached


def kb_graph(kb: str | Path, relations: Sequence[str] | None = None, *, stop_words: Iterable[str] = ()) -> QAGraph:
    """Read a triples file into a :class:`QAGraph` (``relations``: a model's relation types, kept first;
    ``stop_words``: its template words, for the linker)."""
    from kgmm.graphdata.tensors import triples_tensors
    from kgmm.graphdata.vocab import Vocabulary
    from kgmm.nn.qa import RelationGraph

    vocab = Vocabulary(relations, name="relations") if relations is not None else None
    data = triples_tensors(kb, relation_vocab=vocab)
    count = len(relations) if relations is not None else len(data.relation_vocab)
    return QAGraph(data, RelationGraph.from_data(data, count), EntityLinker(data.entity_names, stop_words=stop_words),
                   str(kb))


def store_graph(store, relations: Sequence[str], *, stop_words: Iterable[str] = ()) -> QAGraph:
    """Read an open graph store into a :class:`QAGraph` (entity aliases join the linker)."""
    from kgmm.graphdata.tensors import store_tensors
    from kgmm.graphdata.vocab import Vocabulary
    from kgmm.nn.qa import RelationGraph

    data = store_tensors(store, relation_vocab=Vocabulary(relations, name="relations"))
    return QAGraph(data, RelationGraph.from_data(data, len(relations)),
                   EntityLinker(data.entity_names, data.entity_aliases, stop_words=stop_words),
                   getattr(store, "uri", str(store)), store)


@dataclass
class Example:
    """A question linked to the graph: masked text, seed nodes and answer nodes (those the graph has)."""

    question: Question
    text: str
    seeds: list[int]
    answers: list[int] = field(default_factory=list)
    missing_answers: int = 0
    chain: list[int] | None = None  # a synthesized question's relation-directions, one per step it takes


def link_question(question: Question, graph: QAGraph) -> Example:
    """Link a question's topic entities (bracketed, else found in the text) and answers to ``graph``'s nodes."""
    seeds: list[int] = []
    text = question.text
    if question.topics:
        for name in question.topics:
            seeds += [node for node in graph.linker.link(name) if node not in seeds]
        text = mask_topics(text)
    else:
        for span, nodes in graph.linker.find(text):
            seeds += [node for node in nodes if node not in seeds]
            text = text.replace(span, "X", 1)
    answers: list[int] = []
    missing = 0
    for name in question.answers:
        nodes = graph.linker.link(name, fuzzy=False)
        if nodes:
            answers += [node for node in nodes if node not in answers]
        else:
            missing += 1
    return Example(question, text, seeds, answers, missing)


def _dense(rows: Sequence[Sequence[int]], num_nodes: int):
    import torch

    out = torch.zeros(num_nodes, len(rows))
    for column, nodes in enumerate(rows):
        if nodes:
            out[torch.as_tensor(list(nodes)), column] = 1.0
    return out


class QAModel:
    """A trained QA model, loaded once and asked many times.

    Args:
        model_dir (str or Path): a directory written by :func:`train_qa`.
        text_encoder (optional): a :class:`kgmm.nn.text.TextEncoder` to share (default: the model's).
    """

    def __init__(self, model_dir: str | Path, *, text_encoder=None) -> None:
        import torch

        from kgmm.nn.qa import GraphQA
        from kgmm.tasks.checkpoint import read_model_config

        self.model_dir = Path(model_dir)
        self.config = read_model_config(self.model_dir, kind=KIND, max_format=FORMAT_VERSION, what="a QA model",
                                        fix=FIX)
        weights = self.model_dir / MODEL_FILE
        if not weights.is_file():
            raise SourceError(f"no {MODEL_FILE} beside config.json; {FIX}", path=str(self.model_dir))
        if text_encoder is None:
            from kgmm.nn.text import TextEncoder

            text_encoder = TextEncoder(self.config.get("text_model"))
        self.encoder = text_encoder
        self.relations: list[str] = list(self.config["relations"])
        self.template_words: list[str] = list(self.config.get("template_words", []))
        self.model = GraphQA(len(self.relations), self.encoder.dim, steps=int(self.config["steps"]),
                             fusion=self.config["fusion"], hidden_channels=int(self.config["hidden_channels"]),
                             **self.config.get("architecture", {}))
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state)
        except Exception as e:  # a truncated or foreign file
            raise SourceError(f"cannot load the model weights ({e}); {FIX}", path=str(weights)) from e
        self.model.eval()

    @property
    def steps(self) -> int:
        return self.model.steps

    def reason(self, examples: Sequence[Example], graph: QAGraph):
        """Run the model on a batch of linked examples; return the :class:`kgmm.nn.qa.Reasoning`."""
        import torch

        states, mask = self.encoder.encode_tokens([example.text for example in examples])
        with torch.inference_mode():
            return self.model(graph.graph, _dense([e.seeds for e in examples], graph.num_nodes),
                              {"question": states}, {"question": mask})

    def ask(self, question: str, graph: QAGraph, *, top_k: int = 5, image: str | Path | None = None) -> dict:
        """Answer one question over ``graph``.

        Returns:
            dict with ``question``, ``linked`` (mention -> entities), ``answers`` (each: ``entity``, ``name``,
            ``score`` and ``path``: the facts from a topic entity to the answer, each with its ``sources`` and
            ``sentences`` when the graph is a store), ``reason`` (why there is no answer, else None) and
            ``warnings``.
        """
        from kgmm.nn.qa import trace_path

        warnings: list[str] = []
        if image is not None:
            _check_image(image)
            warnings.append("this model was trained on questions without images; the image was not used")
        text, topics = parse_question(str(question))
        result = {"question": text, "linked": [], "answers": [], "reason": None, "warnings": warnings}
        if not text:
            result["reason"] = "the question is empty; ask e.g. 'which films did [Joel Zwick] direct?'"
            return result
        if len(str(question)) > len(text) + 1:
            warnings.append(f"the question was cut to its first {len(text)} characters")
        example = link_question(Question(text, topics), graph)
        spans = topics or [span for span, _ in graph.linker.find(text)]
        names: dict[str, str] = {}
        for span in spans:  # each mention once, however it is punctuated
            names.setdefault(normalize_name(span), span)
        result["linked"] = [{"mention": name, "entities": [graph.entity_id(n) for n in graph.linker.link(name)]}
                            for name in names.values()]
        if not example.seeds:
            missing = ", ".join(repr(name) for name in topics)
            result["reason"] = (f"no entity named {missing} in the graph ({graph.source}); check the spelling"
                                if topics else "found no entity of the graph in the question; put the entity the "
                                "question is about in [brackets], spelled as in the graph")
            return result
        reasoning = self.reason([example], graph)
        scores = reasoning.scores[:, 0]
        count = min(top_k, int((scores > 0).sum()))
        if count == 0:
            result["reason"] = ("nothing in the graph is connected to the linked entities the way the question asks "
                                f"(within {self.steps} steps)")
            return result
        values, nodes = scores.topk(count)
        for value, node in zip(values.tolist(), nodes.tolist(), strict=True):
            path = [self._fact(graph, source, relation, target)
                    for source, relation, target in trace_path(graph.graph, reasoning, 0, node)]
            result["answers"].append({"entity": graph.entity_id(node), "name": graph.name(node),
                                      "score": round(float(value), 4), "path": path})
        if graph.store is not None:
            _add_evidence(graph.store, [fact for answer in result["answers"] for fact in answer["path"]])
        return result

    def _fact(self, graph: QAGraph, source: int, relation: int, target: int) -> dict:
        count = len(self.relations)
        backwards = relation >= count
        head, tail = (target, source) if backwards else (source, target)
        return {"head": graph.entity_id(head), "head_name": graph.name(head),
                "relation": self.relations[relation % count],
                "tail": graph.entity_id(tail), "tail_name": graph.name(tail),
                "read": "backwards" if backwards else "forwards", "sources": [], "sentences": [], "source_titles": []}


def _add_evidence(store, facts: list[dict]) -> None:
    """Fill in each fact's sources, sentences and source titles: one relation query and one source query for
    all the facts of every answer."""
    stored = store.get_relations((fact["head"], fact["relation"], fact["tail"]) for fact in facts)
    for fact in facts:
        relation = stored.get((fact["head"], fact["relation"], fact["tail"]))
        if relation is not None:
            fact["sources"], fact["sentences"] = list(relation.sources), list(relation.sentences)
    titles = store.get_sources(source for fact in facts for source in fact["sources"])
    for fact in facts:
        fact["source_titles"] = [(titles[i].title or titles[i].origin) if i in titles else i for i in fact["sources"]]


def _check_image(path: str | Path) -> None:
    from kgmm.nn.vision import load_image

    load_image(path)


def _split(questions: list[Question], holdout: float, seed: int) -> tuple[list[Question], list[Question]]:
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    count = round(holdout * len(questions))
    held = set(order[:count])
    return ([q for i, q in enumerate(questions) if i not in held], [q for i, q in enumerate(questions) if i in held])


def train_qa(
    kb: str | Path | None,
    train: Sequence[str | Path],
    out: str | Path,
    *,
    store=None,
    dev: Sequence[str | Path] = (),
    holdout: float = 0.0,
    seed: int = 0,
    steps: int | None = None,
    fusion: str | None = None,
    epochs: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    lr: float = DEFAULT_LR,
    text_model: str | Path | None = None,
    synthesize: bool | None = None,
    synthetic_questions: int = DEFAULT_QUESTIONS,
    progress: bool = True,
) -> dict:
    """Train a QA model on a KB and question files, or on questions made from the graph; write it to ``out``.

    Args:
        kb (str or Path): the KB (``head|relation|tail`` or TAB-separated lines); None with ``store``.
        train (list of paths): question files (``question with [topic]<TAB>answer1|answer2``), any hop counts;
            none: train on questions synthesized from the graph alone (:mod:`kgmm.tasks.qa_synthesis`).
        out (str or Path): the model directory to write.
        store (GraphStore, optional): train over this open store's graph instead of a KB file.
        dev (list of paths, optional): question files to choose the best epoch on (default: 5% of the training
            questions, at most 2,000).
        holdout (float, optional): share of each training file held out of training and written to
            ``out/heldout/<file name>`` for ``kgmm eval qa`` (default 0: train on everything).
        seed (int, optional): seeds the split and training (default 0).
        steps (int, optional): reasoning steps, the most hops (default 3).
        fusion (str, optional): the fusion strategy reading the question (default ``cross-attention``).
        epochs (int, optional): most passes over the training questions (default 12 with labelled questions, 6 on
            synthesized ones alone; past half of them, stops once the validation Hits@1 has not risen for three).
        batch_size (int, optional): questions per step (default 64).
        lr (float, optional): AdamW learning rate (default 1e-3).
        text_model (str or Path, optional): a local transformers text model (default all-MiniLM-L6-v2).
        synthesize (bool, optional): mix in ``synthetic_questions`` made from the graph (default 24,000; by
            default only when ``train`` is empty).
        progress (bool, optional): print progress (default True).

    Returns:
        dict: counts, per-epoch validation Hits@1, the chosen epoch, seconds, the held-out files, ``warnings``.
    """
    import torch

    from kgmm.nn.qa import GraphQA
    from kgmm.nn.text import TextEncoder

    started, synthesize = time.perf_counter(), not train if synthesize is None else bool(synthesize)
    steps, fusion, epochs = _checked_settings(train, out, holdout=holdout, steps=steps, fusion=fusion, epochs=epochs,
                                      batch_size=batch_size, synthesize=synthesize)
    out = Path(out)
    graph = _training_graph(kb, store)
    relations = list(graph.data.relation_vocab)
    data = _training_set(graph, relations, train, dev, out, holdout=holdout, seed=seed, steps=steps,
                         synthesize=synthetic_questions if synthesize else 0, store=store, progress=progress)
    encoder = TextEncoder(text_model)
    train_set, valid_set = _encode_examples(encoder, data.usable, data.validation, progress)
    torch.manual_seed(seed)
    model = GraphQA(len(relations), encoder.dim, steps=steps, fusion=fusion, **ARCHITECTURE)
    history, best_epoch = _fit(model, graph, train_set, valid_set, epochs=epochs, batch_size=batch_size, lr=lr,
                               progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / MODEL_FILE)
    result = {
        "kb": graph.source, "train": [str(p) for p in train], "dev": [str(p) for p in dev],
        "questions": len(data.questions), "linked": data.linked, "trained_on": len(data.usable),
        "validation": len(data.validation), "heldout_files": data.heldout_files, "best_epoch": best_epoch,
        "valid_hits1": history[best_epoch - 1].get("valid_hits1"),
        "history": history, "seconds": round(time.perf_counter() - started, 1),
        "synthesized": data.synthesized, "warnings": data.warnings,
    }
    config = _model_config(result, relations, steps=steps, fusion=fusion, text_model=text_model,
                           text_fingerprint=encoder.fingerprint, seed=seed, holdout=holdout)
    config["template_words"] = template_words(data.questions)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return result


def _model_config(result: dict, relations: list[str], *, steps: int, fusion: str, text_model: str | Path | None,
                  text_fingerprint: str, seed: int, holdout: float) -> dict:
    """What a model's ``config.json`` holds: its relation types and settings, what it was trained on and how it
    scored (from :func:`train_qa`'s ``result``)."""
    return {
        "kind": KIND, "format_version": FORMAT_VERSION, "relations": relations, "steps": steps, "fusion": fusion,
        "hidden_channels": 256, "architecture": dict(ARCHITECTURE), "text_model": str(text_model) if text_model else None,
        "text_fingerprint": text_fingerprint, "seed": seed, "holdout": holdout,
        "training": {key: result[key] for key in ("kb", "train", "dev", "questions", "trained_on", "validation",
                                                   "best_epoch", "valid_hits1", "seconds")},
    }


def _checked_settings(train: Sequence[str | Path], out: str | Path, *, holdout: float, steps: int | None,
                      fusion: str | None, epochs: int | None, batch_size: int,
                      synthesize: bool) -> tuple[int, str, int]:
    """Check :func:`train_qa`'s settings; return the reasoning steps, fusion strategy and epochs, defaults filled
    in."""
    from kgmm.nn.fusion import FUSION_STRATEGIES
    from kgmm.nn.qa import DEFAULT_FUSION, DEFAULT_STEPS

    steps = DEFAULT_STEPS if steps is None else int(steps)
    fusion = fusion or DEFAULT_FUSION
    epochs = int(epochs) if epochs is not None else DEFAULT_EPOCHS if train else SYNTHETIC_EPOCHS
    if fusion not in FUSION_STRATEGIES:
        raise ValidationError(f"no fusion strategy {fusion!r}; available: {', '.join(FUSION_STRATEGIES)}")
    if not 0.0 <= holdout < 1.0:
        raise ValidationError(f"holdout must be in [0, 1), got {holdout!r}")
    if not 1 <= steps <= 6:
        raise ValidationError(f"steps must be between 1 and 6, got {steps!r}")
    if epochs < 1 or batch_size < 1:
        raise ValidationError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if not train and not synthesize:
        raise ValidationError("expected at least one --train questions file, or questions synthesized from the graph")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValidationError(f"{out} exists and is not a directory; pass a new or empty model directory")
    return steps, fusion, epochs


def _training_graph(kb: str | Path | None, store) -> QAGraph:
    """The graph to train over (the store's, else the KB file's), which must hold relations."""
    if store is not None:
        graph = store_graph(store, sorted(store.stats().relations_by_type))
    elif kb is not None:
        graph = kb_graph(kb)
    else:
        raise ValidationError("expected a graph to train over: a KB triples file or a store")
    if not list(graph.data.relation_vocab):
        raise SourceError("holds no relations; a QA model needs a graph with facts (a KB of head|relation|tail "
                          "lines, or a store with relations)", path=graph.source)
    return graph


def _read_training_questions(train: Sequence[str | Path], out: Path, holdout: float,
                             seed: int) -> tuple[list[Question], list[str]]:
    """Read the training files, holding ``holdout`` of each out to ``out/heldout/<file name>``; return the
    questions kept for training and the held-out files written."""
    training: list[Question] = []
    heldout_files = []
    for path in train:
        questions = read_questions(path)
        kept, held = _split(questions, holdout, seed) if holdout else (questions, [])
        training += kept
        if held:
            target = out / HELDOUT_DIR / Path(path).name
            write_questions(held, target)
            heldout_files.append(str(target))
    return training, heldout_files


def _link_training_examples(training: Sequence[Question], graph: QAGraph, dev: Sequence[str | Path], seed: int,
                            train: Sequence[str | Path]) -> tuple[list[Example], list[Example], list[Example]]:
    """Link the questions to ``graph``; return all the examples, those to train on and those to validate on (the
    ``dev`` files' linked questions, else up to 5% of the training ones, at most 2,000)."""
    examples = [link_question(q, graph) for q in training]
    usable = [e for e in examples if e.seeds and e.answers]
    if not usable:
        raise SourceError("no training question could be linked to the KB (a [topic] entity and an answer the KB "
                          "names); check that the questions and the KB spell entities alike", path=str(train[0]))
    rng = random.Random(seed)
    if dev:
        validation = _linked_dev(dev, graph)
    else:
        rng.shuffle(usable)
        cut = _validation_cut(len(usable))
        validation, usable = usable[:cut], usable[cut:]
    return examples, usable, validation


@dataclass
class _TrainingSet:
    """What a QA model trains and validates on: every question, the linked examples used, and notes."""

    questions: list[Question]
    usable: list[Example]
    validation: list[Example]
    linked: int = 0
    heldout_files: list[str] = field(default_factory=list)
    synthesized: int = 0
    warnings: list[str] = field(default_factory=list)


def _training_set(graph: QAGraph, relations: list[str], train: Sequence[str | Path], dev: Sequence[str | Path],
                  out: Path, *, holdout: float, seed: int, steps: int, synthesize: int, store,
                  progress: bool) -> _TrainingSet:
    """The labelled questions of ``train`` (``holdout`` of each kept out), linked, plus ``synthesize``
    questions made from the graph; validated on ``dev``, else on a share of them."""
    questions, heldout_files = _read_training_questions(train, out, holdout, seed)
    examples, usable, validation = (_link_training_examples(questions, graph, dev, seed, train) if questions
                                    else ([], [], _linked_dev(dev, graph)))
    data = _TrainingSet(questions, usable, validation, sum(1 for e in examples if e.seeds), heldout_files)
    if synthesize:
        made, data.warnings = _synthetic_examples(graph, relations, steps=steps, count=synthesize, seed=seed,
                                                  store=store, progress=progress)
        data.questions = questions + [example.question for example in made]
        data.usable, data.validation = _mixed(usable, validation, made, labelled_dev=bool(dev), seed=seed)
        data.synthesized, data.linked = len(made), data.linked + len(made)
    return data


def _linked_dev(dev: Sequence[str | Path], graph: QAGraph) -> list[Example]:
    """The questions of the ``dev`` files that link to the graph, with an answer it names."""
    return [e for path in dev for e in (link_question(q, graph) for q in read_questions(path)) if e.seeds and e.answers]


def _synthetic_examples(graph: QAGraph, relations: list[str], *, steps: int, count: int, seed: int, store,
                        progress: bool) -> tuple[list[Example], list[str]]:
    """Questions made from ``graph`` (:func:`kgmm.tasks.qa_synthesis.synthesize_questions`) as linked examples,
    and a warning naming the relations whose names hold no word."""
    from kgmm.tasks.qa_synthesis import pack_signal_words, relation_readings, spacy_lemmatizer, synthesize_questions

    signal_words = pack_signal_words(relations) if store is not None else {}
    readings = relation_readings(relations, signal_words, lemmatize=spacy_lemmatizer())
    if progress:
        print(f"synthesizing {count:,} questions from the graph's {len(relations)} relation types ...", flush=True)
    made = synthesize_questions(graph, relations, steps=steps, count=count, seed=seed, readings=readings)
    if not made:
        raise SourceError("no question could be made from the graph: no chain of facts of at most "
                          f"{steps} steps reaches {MAX_ANSWERS} answers or fewer", path=graph.source)
    opaque = [reading.relation for reading in readings if reading.opaque]
    warnings = [f"relation type(s) {', '.join(opaque[:10])} hold no word to ask by; questions about them are "
                "matched only through labelled examples (--train)"] if opaque else []
    return [Example(q.question, mask_topics(q.question.text), [q.topic], list(q.answers), chain=list(q.chain))
            for q in made], warnings


def _validation_cut(count: int) -> int:
    """How many of ``count`` training examples validate when no dev file is given: 5%, at least one, at most
    2,000; none of 20 or fewer."""
    return min(2000, max(1, count // 20)) if count > 20 else 0


def _mixed(usable: list[Example], validation: list[Example], made: list[Example], *, labelled_dev: bool,
           seed: int) -> tuple[list[Example], list[Example]]:
    """Add the synthesized examples to the labelled ones, each labelled one repeated so that they make up at least
    ``LABELLED_SHARE`` of the mix (at most ``MAX_REPEATS`` copies: 20 written questions among 24,000 made ones
    would otherwise count for nothing); without a labelled dev file, 5% of the made ones (at most 2,000) validate."""
    made = list(made)
    random.Random(seed).shuffle(made)
    cut = 0 if labelled_dev else _validation_cut(len(made))
    wanted = LABELLED_SHARE * (len(made) - cut) / (1 - LABELLED_SHARE)
    repeats = min(MAX_REPEATS, max(1, math.ceil(wanted / len(usable)))) if usable else 1
    combined = usable * repeats + made[cut:]
    random.Random(seed + 1).shuffle(combined)
    return combined, validation + made[:cut]


@dataclass
class _Encoded:
    """Linked examples with their question token states ``[B, T, D]`` and masks ``[B, T]``."""

    examples: list[Example]
    states: object
    mask: object


def _encode_examples(encoder, usable: list[Example], validation: list[Example],
                     progress: bool) -> tuple[_Encoded, _Encoded | None]:
    """Encode the training questions (kept in bfloat16) and the validation ones (None when there are none)."""
    import torch

    if progress:
        print(f"encoding {len(usable) + len(validation):,} questions ...", flush=True)
    train_states, train_mask = encoder.encode_tokens([e.text for e in usable], progress=progress)
    train_set = _Encoded(usable, train_states.to(torch.bfloat16), train_mask)
    if not validation:
        return train_set, None
    valid_states, valid_mask = encoder.encode_tokens([e.text for e in validation])
    return train_set, _Encoded(validation, valid_states, valid_mask)


def _fit(model, graph: QAGraph, train: _Encoded, valid: _Encoded | None, *, epochs: int, batch_size: int, lr: float,
         progress: bool) -> tuple[list[dict], int]:
    """Train ``model`` (AdamW, one-cycle schedule) and leave it in its best epoch's state: the best validation
    Hits@1, else the lowest loss; past half the epochs, stop after ``PATIENCE`` epochs without a better one.
    Return the per-epoch rows and the best epoch."""
    import torch

    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    batches_per_epoch = (len(train.examples) + batch_size - 1) // batch_size
    schedule = _one_cycle(optimiser, lr, epochs * batches_per_epoch)
    history = []
    best = (-math.inf, 0, None)  # the score is -loss without a validation split, and a loss may stay above 1
    stale = 0
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, **_train_epoch(model, graph, train, optimiser, schedule, batch_size)}
        if valid is not None:
            model.eval()
            row["valid_hits1"] = round(_hits_at_1(model, graph, valid.examples, valid.states, valid.mask), 4)
        history.append(row)
        if progress:
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        score = row.get("valid_hits1", -row["loss"])
        if score > best[0]:
            best, stale = (score, epoch, {k: v.clone() for k, v in model.state_dict().items()}), 0
        else:
            stale += 1
            if stale >= PATIENCE and epoch >= epochs // 2:
                break
        if score >= 1.0:
            break
    model.load_state_dict(best[2])
    return history, best[1]


def _one_cycle(optimiser, lr: float, total_steps: int):
    """OneCycleLR with a 10% warm-up, at least two steps long (its phases may not be empty: a warm-up of 0.1 x 10
    steps divided by zero); a run of under four steps keeps ``lr`` constant."""
    import torch

    if total_steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=total_steps,
                                               pct_start=max(0.1, 2.5 / total_steps))


def _train_epoch(model, graph: QAGraph, train: _Encoded, optimiser, schedule, batch_size: int) -> dict:
    """One pass over the training examples in a random order; return its mean ``loss`` and ``seconds``."""
    import torch

    model.train()
    order = torch.randperm(len(train.examples)).tolist()
    total, epoch_started = 0.0, time.perf_counter()
    for index in batched(order, batch_size):
        batch = [train.examples[i] for i in index]
        seeds = _dense([e.seeds for e in batch], graph.num_nodes)
        target = _dense([e.answers for e in batch], graph.num_nodes)
        states = train.states[index].float()
        mask = train.mask[index]
        width = int(mask.sum(1).max())
        reasoning = model(graph.graph, seeds, {"question": states[:, :width]}, {"question": mask[:, :width]})
        loss = answer_loss(reasoning.scores, target) + CHAIN_WEIGHT * chain_loss(reasoning, batch)
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        total += float(loss.detach()) * len(index)
    return {"loss": round(total / len(train.examples), 4), "seconds": round(time.perf_counter() - epoch_started, 1)}


def answer_loss(scores, target):
    """Squared error summed over the entities, averaged over the questions.

    Shapes:
        scores, target ``[N, B]`` -> scalar.
    """
    return ((scores - target) ** 2).sum(0).mean()


def chain_loss(reasoning, batch: Sequence[Example]):
    """Cross-entropy of the steps a synthesized question takes and of the relation each of them follows, averaged
    over the batch's synthesized questions (0 when it has none): the chain its answers came from is known, so the
    model is told how many hops it is and which relations, not left to find them from the answers alone.

    Shapes:
        reasoning.hop_weights ``[B, T]``, reasoning.relation_weights ``[B, T, 2R]`` -> scalar.
    """
    import torch

    rows = [(b, e.chain) for b, e in enumerate(batch) if e.chain]
    if not rows:
        return reasoning.scores.new_zeros(())
    hops = torch.tensor([len(chain) - 1 for _, chain in rows])
    hop_loss = -torch.log(reasoning.hop_weights[torch.tensor([b for b, _ in rows]), hops] + 1e-9).mean()
    b, t, key = (torch.tensor(v) for v in zip(*[(b, t, k) for b, chain in rows for t, k in enumerate(chain)],
                                               strict=True))
    return hop_loss - torch.log(reasoning.relation_weights[b, t, key] + 1e-9).mean()


def _hits_at_1(model, graph: QAGraph, examples: Sequence[Example], states, mask, batch_size: int = 256) -> float:
    import torch

    hits = 0
    with torch.inference_mode():
        for batch, batch_states, batch_mask in zip(batched(list(examples), batch_size), batched(states, batch_size),
                                                   batched(mask, batch_size), strict=True):
            reasoning = model(graph.graph, _dense([e.seeds for e in batch], graph.num_nodes),
                              {"question": batch_states}, {"question": batch_mask})
            values, top = reasoning.scores.max(dim=0)
            hits += sum(1 for e, v, n in zip(batch, values.tolist(), top.tolist(), strict=True)
                        if v > 0 and n in e.answers)
    return hits / max(1, len(examples))


def evaluate_qa(model_dir: str | Path | None, kb: str | Path | None, questions: str | Path, *, store=None,
                batch_size: int = 256, qa_model: QAModel | None = None, graph: QAGraph | None = None) -> dict:
    """Score a QA model on a question file over a KB.

    The graph is the KB file ``kb`` or the open ``store``. A question is *reachable* when one of its answers is
    within the model's steps of a linked topic entity in the graph (the KB may lack the facts that lead to the
    others); Hits@1 and answer-set F1 (the predicted set: every entity scoring at least 0.5, else the top one) are
    reported overall and on reachable questions.

    Returns:
        dict with ``hits1``, ``f1``, ``reachable_hits1``, ``reachable_f1``, counts, and ``questions_per_s`` and
        ``answering_s``: the time spent answering (linking, encoding and reasoning, batched; scoring and the
        reachability check are not counted).
    """
    import torch

    model = qa_model or QAModel(model_dir)
    if graph is None:
        graph = open_qa_graph(model, kb=kb, store=store)
    read = read_questions(questions)
    answering = 0.0
    hits = f1 = reach_hits = reach_f1 = 0.0
    reachable = unlinked = 0
    for questions_batch in batched(read, batch_size):
        began = time.perf_counter()  # answering: linking, encoding and reasoning, batched
        batch = [link_question(q, graph) for q in questions_batch]
        linked = [e for e in batch if e.seeds]
        if linked:
            scores = model.reason(linked, graph).scores
            values, top = scores.max(dim=0)
            predicted_sets = [set(rows.tolist()) for rows in _columns_at_least(scores, ANSWER_THRESHOLD)]
        answering += time.perf_counter() - began
        unlinked += len(batch) - len(linked)
        if not linked:
            continue
        reached = graph.reachable(_dense([e.seeds for e in linked], graph.num_nodes), model.steps)
        for column, example in enumerate(linked):
            answers = set(example.answers)
            hit = float(values[column] > 0 and int(top[column]) in answers)
            predicted = predicted_sets[column]
            if not predicted and values[column] > 0:
                predicted = {int(top[column])}
            truth = answers | ({-i for i in range(1, example.missing_answers + 1)})  # answers the KB lacks count
            overlap = len(predicted & truth)
            score = 2 * overlap / (len(predicted) + len(truth)) if predicted and truth else 0.0
            hits += hit
            f1 += score
            if answers and bool(reached[torch.as_tensor(sorted(answers)), column].any()):
                reachable += 1
                reach_hits += hit
                reach_f1 += score
    total = len(read)
    return {
        "model": str(model.model_dir), "kb": str(graph.source), "questions_file": str(questions),
        "questions": total, "linked": total - unlinked, "reachable": reachable,
        "hits1": round(hits / max(1, total), 4), "f1": round(f1 / max(1, total), 4),
        "reachable_hits1": round(reach_hits / max(1, reachable), 4),
        "reachable_f1": round(reach_f1 / max(1, reachable), 4),
        "questions_per_s": round(total / max(answering, 1e-9), 1), "answering_s": round(answering, 2),
    }


def _columns_at_least(scores, threshold: float):
    """The row indices at or above ``threshold`` in each column of ``scores`` ``[N, B]``."""
    import torch

    rows, columns = (scores >= threshold).nonzero(as_tuple=True)
    counts = torch.bincount(columns, minlength=scores.size(1)).tolist()
    return torch.split(rows[torch.argsort(columns, stable=True)], counts)


def open_qa_graph(model: QAModel, *, kb: str | Path | None = None, store=None) -> QAGraph:
    """The graph to ask over: a KB file, or an open store."""
    if kb is not None:
        return kb_graph(kb, model.relations, stop_words=model.template_words)
    if store is None:
        raise ValidationError("expected a graph to ask: a --store or a --kb triples file")
    graph = store_graph(store, model.relations, stop_words=model.template_words)
    if graph.num_nodes == 0:
        raise KgmmError(f"the store {graph.source} is empty; ingest documents or a KB into it first")
    return graph


__all__ = ["EntityLinker", "Example", "QAGraph", "QAModel", "evaluate_qa", "kb_graph", "link_question",
           "open_qa_graph", "store_graph", "template_words", "train_qa"]
