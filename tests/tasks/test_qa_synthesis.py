"""Questions synthesized from a graph: relation names read as words, chains sampled with every answer they reach,
and a QA model trained on them alone answering labelled questions it never saw."""

from __future__ import annotations

import json
import math
import random

import pytest

from kgmm.errors import SourceError, ValidationError
from kgmm.tasks.qa_synthesis import is_opaque, relation_readings, relation_words, synthesize_questions

CLINICS = [f"Clinic {name}" for name in ("North", "South", "East", "West", "Hill", "Lake")]
DOCTORS = [f"Dr {first} {last}" for first in ("Ana", "Ben", "Cal", "Dee") for last in ("Moss", "Pike", "Reed")]
DRUGS = ["Aspirin", "Heparin", "Insulin", "Lithium", "Morphine", "Codeine"]
ILLNESSES = ["Gout", "Asthma", "Mumps", "Rickets", "Scurvy", "Croup", "Shingles"]


def care_world(seed: int = 0) -> list[tuple[str, str, str]]:
    """A made-up graph in camelCase relation names (no MetaQA relation among them)."""
    rng = random.Random(seed)
    triples = []
    for doctor in DOCTORS:
        triples.append((doctor, "worksAt", rng.choice(CLINICS)))
        for drug in rng.sample(DRUGS, 2):
            triples.append((doctor, "prescribes", drug))
    for drug in DRUGS:
        for illness in rng.sample(ILLNESSES, 2):
            triples.append((drug, "treatsCondition", illness))
    return triples


def labelled_questions(triples) -> list[str]:
    """How a person would ask, worded unlike any synthesis template."""
    works = {d: c for d, r, c in triples if r == "worksAt"}
    prescribes: dict[str, set] = {}
    treats: dict[str, set] = {}
    for head, relation, tail in triples:
        if relation == "prescribes":
            prescribes.setdefault(head, set()).add(tail)
        elif relation == "treatsCondition":
            treats.setdefault(head, set()).add(tail)
    lines = [f"where does [{doctor}] work\t{clinic}" for doctor, clinic in works.items()]
    lines += [f"which conditions can [{drug}] treat\t{'|'.join(sorted(ills))}" for drug, ills in treats.items()]
    for doctor, drugs in prescribes.items():
        illnesses = sorted({i for drug in drugs for i in treats.get(drug, ())})
        lines.append(f"which conditions are treated by the drugs [{doctor}] prescribes\t{'|'.join(illnesses)}")
    return lines


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("synth")
    triples = care_world()
    kb = folder / "kb.txt"
    kb.write_text("".join(f"{h}|{r}|{t}\n" for h, r, t in triples), encoding="utf-8")
    asked = folder / "asked.txt"
    asked.write_text("\n".join(labelled_questions(triples)) + "\n", encoding="utf-8")
    return folder, kb, asked, triples


@pytest.mark.parametrize("name, words", [
    ("directed_by", ["directed", "by"]), ("placeOfBirth", ["place", "of", "birth"]),
    ("film.film.directed_by", ["directed", "by"]), ("HAS_SYMPTOM", ["has", "symptom"]),
    ("people/person/nationality", ["nationality"]), ("P31", ["p", "31"]),
])
def test_relation_words_split_every_naming_style(name, words):
    assert relation_words(name) == words


def test_opaque_names_are_told_apart_from_words():
    assert [is_opaque(name) for name in ("P31", "r_12", "R7", "treats", "is_a")] == [True, True, True, False, False]
    reading = relation_readings(["directed_by"], lemmatize=lambda words: ["direct", "by"])[0]
    assert reading.phrases[:2] == ("directed by", "direct by")
    assert (reading.agent_verb, reading.agent_base) == ("directed", "direct")
    assert relation_readings(["HAS_GENRE"])[0].phrases == ("has genre", "genre")
    assert relation_readings(["TREATS"], {"TREATS": ["cures", "treats"]})[0].phrases == ("treats", "cures")


LEMMAS = {"starred": "star", "actors": "actor", "treats": "treat", "works": "work", "directed": "direct",
          "written": "write", "created": "create"}


def test_readings_know_head_nouns_verbs_and_question_words():
    readings = relation_readings(["starred_actors", "release_year", "treats", "worksFor", "placeOfBirth", "P31"],
                                 lemmatize=lambda words: [LEMMAS.get(word, word) for word in words])
    starred, year, treats, works, place, opaque = readings
    assert (starred.noun, starred.act_verb, starred.act_base, starred.wh) == ("actors", "starred", "star", "what")
    assert "actors" in starred.phrases
    assert (year.noun, year.wh, year.mod) == ("year", "when", "released")
    assert (treats.does, treats.does_base, treats.noun) == ("treats", "treat", None)
    assert (works.does, works.does_base) == ("works for", "work for")
    assert (place.noun, place.wh) == ("place", "where")
    assert opaque.opaque and opaque.noun is None and opaque.act_verb is None
    assert starred.agent == "actor"
    directed, written, created = relation_readings(["directed_by", "written_by", "created_by"],
                                                   lemmatize=lambda words: [LEMMAS.get(word, word) for word in words])
    assert (directed.agent, written.agent, created.agent) == ("director", "writer", "creator")


def test_a_shared_agent_is_worded_with_also_and_irregular_participles_keep_their_tense():
    import re

    from kgmm.tasks.qa_synthesis import word_chain

    readings = relation_readings(["directed_by", "written_by"],
                                 lemmatize=lambda words: [LEMMAS.get(word, word) for word in words])
    rng = random.Random(0)
    worded = [word_chain("[X]", [key, key + 2], readings, 2, rng) for key in (0, 1) for _ in range(200)]
    assert any("whose directors also directed [X]" in text for text in worded)
    assert any("the director of [X] also directed which" in text for text in worded)
    assert any("whose writers have also written [X]" in text or "writers also had written [X]" in text
               for text in worded)
    assert not any(re.search(r"(?<!have )also written", text) for text in worded)  # "written" is no past tense


def test_only_the_outer_step_is_worded_as_a_question():
    import re

    from kgmm.tasks.qa_synthesis import word_chain

    readings = relation_readings(["directed_by", "starred_actors", "has_genre"],
                                 lemmatize=lambda words: [LEMMAS.get(word, word) for word in words])
    rng = random.Random(0)
    question_word = re.compile(r"\b(?:what|which|whom|when|where)\b")  # "who" may be relative: "the one who"
    worded = [word_chain("[X]", [rng.randrange(6) for _ in range(3)], readings, 3, rng) for _ in range(400)]
    nested = [text for text in worded if " , " not in text]
    assert len(nested) > 150
    for text in nested:  # inner steps are noun phrases: "what genre do the ones directed by [X] have"
        assert len(question_word.findall(text)) <= 1, text
    assert any("together with [X]" in text or "share" in text for text in worded)
    assert any("star in" in text or "starred in" in text for text in worded)


def test_every_synthesized_answer_is_what_its_chain_reaches(world):
    from kgmm.sources.triples import relation_type
    from kgmm.tasks.qa import kb_graph

    _, kb, _, triples = world
    graph = kb_graph(kb)
    relations = list(graph.data.relation_vocab)
    made = synthesize_questions(graph, relations, steps=3, count=300, seed=1)
    assert len(made) >= 250 and {len(q.chain) for q in made} == {1, 2, 3}
    names = graph.data.entity_names
    edges = {(h, relation_type(r), t) for h, r, t in triples}
    for question in made:
        frontier = {names[question.topic]}
        for key in question.chain:
            relation, forward = relations[key % len(relations)], key < len(relations)
            frontier = {(t if forward else h) for h, r, t in edges if r == relation and (h if forward else t) in frontier}
            frontier.discard(names[question.topic])
        assert sorted(names[a] for a in question.answers) == sorted(frontier)
        assert question.question.topics == [names[question.topic]]
        assert f"[{names[question.topic]}]" in question.question.text
    assert any("works at" in q.question.text for q in made) and any("treats condition" in q.question.text for q in made)


def test_zero_label_model_answers_questions_it_never_saw(world, tmp_path):
    from kgmm.tasks.qa import evaluate_qa, train_qa

    _, kb, asked, _ = world
    result = train_qa(kb, [], tmp_path / "model", synthetic_questions=1000, epochs=8, batch_size=32, lr=3e-3,
                      steps=2, progress=False)
    assert result["synthesized"] == 1000 and result["questions"] >= 900 and result["warnings"] == []
    config = json.loads((tmp_path / "model" / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["train"] == []
    metrics = evaluate_qa(tmp_path / "model", kb, asked)
    assert metrics["reachable_hits1"] >= 0.6, metrics


def test_opaque_relations_train_with_a_warning_and_bad_graphs_are_refused(tmp_path):
    from kgmm.tasks.qa import train_qa

    kb = tmp_path / "kb.txt"
    kb.write_text("".join(f"e{i}|P31|e{i + 1}\ne{i}|P279|c{i % 3}\n" for i in range(30)), encoding="utf-8")
    result = train_qa(kb, [], tmp_path / "model", synthetic_questions=200, epochs=1, steps=2, progress=False)
    assert len(result["warnings"]) == 1 and "P31" in result["warnings"][0] and "--train" in result["warnings"][0]
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises((SourceError, ValidationError)) as error:
        train_qa(empty, [], tmp_path / "none", progress=False)
    assert str(empty) in str(error.value)
    assert not (tmp_path / "none").exists()


def _fill(store, triples, folder):
    from kgmm.schema import Relation
    from kgmm.sources.triples import read_triples

    kb = folder / "facts.txt"
    kb.write_text("".join(f"{h}|{r}|{t}\n" for h, r, t in triples), encoding="utf-8")
    read = read_triples(kb)
    store.upsert_entities(read.entities)
    store.upsert_relations([Relation(r.head, r.type, r.tail, 1.0, "triples", [], []) for r in read.relations])
    return store


def _store_of(triples, folder):
    from kgmm.store import open_store

    return _fill(open_store(folder / "store"), triples, folder)


def test_ask_keeps_the_model_with_the_store_on_both_backends(store_factory, world, tmp_path, monkeypatch):
    import kgmm.app.ask as ask_module
    from kgmm.app.ask import ask

    monkeypatch.setenv("KGMM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ask_module, "MIN_QUESTIONS", 300)
    monkeypatch.setattr(ask_module, "AUTO_EPOCHS", 2)
    _, _, _, triples = world
    store = _fill(store_factory(0), triples, tmp_path)
    doctor = triples[0][0]
    result = ask(store, f"where does [{doctor}] work")
    home = store.artifact_dir("qa-model")
    assert result["model"] == str(home) and (home / "model.pt").is_file() and result["answers"]
    if hasattr(store, "path"):  # embedded: beside the database
        assert home == store.path / "kgmm-derived" / "qa-model"
    else:  # a server: in the cache, one folder per database
        assert home.is_relative_to(tmp_path / "cache" / "stores")
        assert store_factory(1).artifact_dir("qa-model") != home


def test_ask_a_store_trains_its_own_model_once_and_again_when_relations_change(world, tmp_path, monkeypatch):
    import kgmm.app.ask as ask_module
    from kgmm.app.ask import ask

    monkeypatch.setattr(ask_module, "MIN_QUESTIONS", 600)
    monkeypatch.setattr(ask_module, "QUESTIONS_PER_FACT", 1)
    monkeypatch.setattr(ask_module, "AUTO_EPOCHS", 4)
    _, _, _, triples = world
    doctor, clinic = next((h, t) for h, r, t in triples if r == "worksAt")
    notices: list[str] = []
    with _store_of(triples, tmp_path) as store:
        result = ask(store, f"where does [{doctor}] work", notice=notices.append)
        home = store.artifact_dir("qa-model")
        assert result["model"] == str(home) and (home / "config.json").is_file()
        assert [a["name"] for a in result["answers"]][:1] == [clinic]
        assert result["answers"][0]["path"][0]["relation"] == "WORKS_AT"
        assert len(notices) == 1 and str(home) in notices[0] and "it has none yet" in notices[0]
        trained = (home / "model.pt").stat().st_mtime_ns
        ask(store, f"where does [{doctor}] work", notice=notices.append)
        assert len(notices) == 1 and (home / "model.pt").stat().st_mtime_ns == trained  # warm: not trained again
        from kgmm.schema import Relation

        store.upsert_relations([Relation(store.find_entities(doctor)[0].entity.id, "MENTORS",
                                         store.find_entities(DOCTORS[1])[0].entity.id, 1.0, "hand", [], [])])
        ask(store, f"who does [{doctor}] mentor", notice=notices.append)
        assert len(notices) == 2 and "relation types changed" in notices[1]
        assert "MENTORS" in json.loads((home / "config.json").read_text(encoding="utf-8"))["relations"]
        assert not list(home.parent.glob(".training-*"))  # the staging folder is gone


def test_ask_a_store_without_relations_says_so_and_writes_nothing(tmp_path):
    from kgmm.app.ask import ask
    from kgmm.schema import Entity
    from kgmm.store import open_store

    with open_store(tmp_path / "store") as store:
        store.upsert_entities([Entity("general:thing:a", "A", "Thing", "general")])
        with pytest.raises(SourceError, match="holds no relations"):
            ask(store, "what is [A]")
        assert not store.artifact_dir("qa-model").parent.exists()


def test_qa_curve_trains_a_model_per_size_and_scores_every_file(world, tmp_path):
    from kgmm.bench.qa_curve import qa_curve

    _, kb, asked, _ = world
    result = qa_curve(kb, [asked], tmp_path / "curve", sizes=[0, 4, None], test_share=0.5, synthetic_questions=300,
                      epochs=2, steps=2)
    assert [(row["labelled"], row["file"]) for row in result["rows"]] == [("0", "asked.txt"), ("4", "asked.txt"),
                                                                          ("all", "asked.txt")]
    assert all(row["questions"] == 15 and 0.0 <= row["reachable_hits1"] <= 1.0 for row in result["rows"])
    assert len((tmp_path / "curve" / "train-4" / "asked.txt").read_text(encoding="utf-8").splitlines()) == 4
    assert len((tmp_path / "curve" / "train-all" / "asked.txt").read_text(encoding="utf-8").splitlines()) == 15
    assert not (tmp_path / "curve" / "train-0").exists()
    assert (tmp_path / "curve" / "qa_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "curve" / "qa_curve.json").read_text(encoding="utf-8"))["rows"] == result["rows"]


def test_ask_a_store_whose_folder_cannot_be_written_says_how_to_train_elsewhere(world, tmp_path, monkeypatch):
    from kgmm.app.ask import ask
    from kgmm.errors import StoreError

    _, _, _, triples = world
    with _store_of(triples, tmp_path) as store:
        blocked = tmp_path / "blocked"
        blocked.write_text("a file where the model folder would go", encoding="utf-8")
        monkeypatch.setattr(type(store), "artifact_dir", lambda self, name: blocked / name)
        with pytest.raises(StoreError, match=r"cannot keep the store's QA model in .*--model DIR"):
            ask(store, f"where does [{triples[0][0]}] work")


def test_topic_names_with_brackets_or_quotes_are_worded_safely(tmp_path):
    from kgmm.sources.questions import mask_topics
    from kgmm.tasks.qa import kb_graph

    kb = tmp_path / "kb.txt"
    kb.write_text("Alpha [2019]|made_by|Bob `Drop` O'Neil\nGamma|made_by|Bob `Drop` O'Neil\n", encoding="utf-8")
    graph = kb_graph(kb)
    made = synthesize_questions(graph, list(graph.data.relation_vocab), steps=1, count=40, seed=0)
    assert made and all(mask_topics(q.question.text).count("[") == 0 for q in made)
    assert any("[Alpha (2019)]" in q.question.text for q in made)


def test_chain_loss_rewards_the_hops_and_relations_a_question_was_made_from():
    import torch

    from kgmm.nn.qa import Reasoning
    from kgmm.sources.questions import Question
    from kgmm.tasks.qa import Example, chain_loss

    def reasoning(hop, relations):
        hops = torch.full((2, 3), 0.05).index_fill_(1, torch.tensor([hop]), 0.9)
        weights = torch.full((2, 3, 4), 0.1)
        for t, key in enumerate(relations):
            weights[:, t, key] = 0.7
        return Reasoning(torch.zeros(5, 2), [], weights, hops)

    made = Example(Question("q", [], []), "q", [0], [1], chain=[2, 1])
    labelled = Example(Question("q", [], []), "q", [0], [1])
    right, wrong = reasoning(1, [2, 1]), reasoning(0, [0, 3])
    expected = -math.log(0.9) - math.log(0.7)  # the hop it took, then the mean over its two steps' relations
    assert float(chain_loss(right, [made, labelled])) == pytest.approx(expected, abs=1e-4)
    assert float(chain_loss(wrong, [made, labelled])) > float(chain_loss(right, [made, labelled])) + 3
    assert float(chain_loss(right, [labelled, labelled])) == 0.0  # labelled questions have no chain to follow


def test_a_few_labelled_questions_are_repeated_to_count_beside_the_made_ones():
    from kgmm.sources.questions import Question
    from kgmm.tasks.qa import LABELLED_SHARE, MAX_REPEATS, Example, _mixed

    def example(text, chain=None):
        return Example(Question(text, [], []), text, [0], [1], chain=chain)

    labelled = [example(f"written {i}") for i in range(5)]
    made = [example(f"made {i}", [0]) for i in range(1000)]
    train, validation = _mixed(labelled, [], made, labelled_dev=False, seed=0)
    assert len(validation) == 50 and all(e.chain for e in validation)
    copies = sum(1 for e in train if e.chain is None)
    assert copies == 5 * MAX_REPEATS  # 5 questions would need 48 copies each to reach the share: capped
    many = [example(f"written {i}") for i in range(400)]
    train, _ = _mixed(many, [], made, labelled_dev=False, seed=0)
    share = sum(1 for e in train if e.chain is None) / len(train)
    assert LABELLED_SHARE <= share < LABELLED_SHARE + 0.3 and sum(1 for e in train if e.chain) == 950


def test_a_chain_goes_on_by_what_suits_the_kind_of_entity_it_reached(tmp_path):
    """A film's director directs films (share 1.0); a rating that only shares its name with a film stars
    no one (share: one rating in three), so a chain from a rating rarely goes on to actors."""
    from kgmm.tasks.qa import kb_graph
    from kgmm.tasks.qa_synthesis import _Adjacency

    lines = [f"Film {i}|directed_by|Dir {i % 3}\nFilm {i}|has_rating|{('good', 'bad', 'fine')[i % 3]}\n"
             f"Film {i}|starred_actors|Actor {i % 4}\n" for i in range(12)]
    lines.append("good|starred_actors|Actor 9\n")  # a film called "good": the name a rating also has
    kb = tmp_path / "kb.txt"
    kb.write_text("".join(lines), encoding="utf-8")
    graph = kb_graph(kb)
    relations = list(graph.data.relation_vocab)
    walk = graph.graph
    keys = 2 * len(relations)
    adjacency = _Adjacency(walk.source.tolist(), walk.target.tolist(), walk.relation.tolist(), graph.num_nodes, keys)
    directed, rating, starred = (relations.index(name) for name in ("DIRECTED_BY", "HAS_RATING", "STARRED_ACTORS"))
    inverse = len(relations)
    assert adjacency.follows[directed, directed + inverse] == 1.0  # every director reached directs films
    assert adjacency.follows[rating, starred] == pytest.approx(1 / 3)  # "good" only
    assert adjacency.follows[rating, rating + inverse] == 1.0  # back to the films of that rating
    made = synthesize_questions(graph, relations, steps=2, count=600, seed=0)
    after_rating = [q.chain[1] for q in made if len(q.chain) == 2 and q.chain[0] == rating]
    assert after_rating and after_rating.count(rating + inverse) > 2 * after_rating.count(starred)


def test_an_agent_is_asked_about_from_its_own_side():
    from kgmm.tasks.qa_synthesis import word_chain

    readings = relation_readings(["directed_by", "starred_actors"],
                                 lemmatize=lambda words: [LEMMAS.get(word, word) for word in words])
    rng = random.Random(0)
    worded = {word_chain("[X]", [key], readings, 2, rng) for key in (2, 3) for _ in range(400)}
    assert "what was [X] the director of" in worded
    assert any(text.endswith("was [X] an actor in") for text in worded)
    assert any(text.startswith("[X] was the director of which ") for text in worded)
