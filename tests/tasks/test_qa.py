"""Question answering end to end on a small generated movie world: train, evaluate, ask (KB and store), bad input."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from kgmm.errors import KgmmError
from kgmm.sources.questions import mask_topics, parse_question, read_questions

PEOPLE = [f"{first} {last}" for first in ("Ada", "Bo", "Cy", "Di", "Ed", "Flo") for last in ("Quill", "Rook", "Stone")]
MOVIES = [f"The {adjective} {noun}" for adjective in ("Red", "Blue", "Late", "Quiet", "Last", "Long")
          for noun in ("River", "Door", "Summer", "Night", "Road")]
GENRES = ["Drama", "Comedy", "Horror", "Western"]


def movie_world(seed: int = 0) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    triples = []
    for movie in MOVIES:
        triples.append((movie, "directed_by", rng.choice(PEOPLE)))
        for actor in rng.sample(PEOPLE, 2):
            triples.append((movie, "starred_actors", actor))
        triples.append((movie, "has_genre", rng.choice(GENRES)))
    return triples


def questions(triples) -> list[str]:
    """Four templates, 1- and 2-hop, both directions; answers computed from the triples."""
    directed = {}
    starred = {}
    genre = {}
    for head, relation, tail in triples:
        if relation == "directed_by":
            directed.setdefault(tail, set()).add(head)
        elif relation == "starred_actors":
            starred.setdefault(tail, set()).add(head)
        else:
            genre[head] = tail
    lines = []
    for movie in MOVIES:
        lines.append(f"what genre is [{movie}]\t{genre[movie]}")
    for person, movies in directed.items():
        lines.append(f"which movies did [{person}] direct\t{'|'.join(sorted(movies))}")
        lines.append(f"what genres are the films directed by [{person}]\t"
                     f"{'|'.join(sorted({genre[m] for m in movies}))}")
    for person, movies in starred.items():
        lines.append(f"what films did [{person}] act in\t{'|'.join(sorted(movies))}")
    return lines


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qa")
    triples = movie_world()
    kb = folder / "kb.txt"
    kb.write_text("".join(f"{h}|{r}|{t}\n" for h, r, t in triples), encoding="utf-8")
    lines = questions(triples)
    random.Random(1).shuffle(lines)
    train = folder / "train.txt"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder, kb, train


@pytest.fixture(scope="module")
def trained(world):
    from kgmm.tasks.qa import train_qa

    folder, kb, train = world
    out = folder / "model"
    result = train_qa(kb, [train], out, holdout=0.2, epochs=40, batch_size=16, lr=3e-3, fusion="early-concat",
                      steps=2, progress=False)
    return out, result


def test_training_on_a_few_questions_without_validation_keeps_the_last_epoch(world, tmp_path):
    """Twenty questions or fewer leave no validation split, so epochs are chosen by loss, which here stays above 1."""
    from kgmm.tasks.qa import QAModel, train_qa

    _, kb, train = world
    many_answers = [line for line in train.read_text(encoding="utf-8").splitlines()
                    if line.startswith("what films did")][:8]
    few = tmp_path / "few.txt"
    few.write_text("\n".join(many_answers) + "\n", encoding="utf-8")
    result = train_qa(kb, [few], tmp_path / "model", epochs=2, batch_size=4, lr=1e-7, fusion="early-concat",
                      steps=1, progress=False)
    assert result["validation"] == 0 and result["trained_on"] == 8
    assert min(row["loss"] for row in result["history"]) > 1.0
    assert result["best_epoch"] in (1, 2)
    assert sorted(QAModel(tmp_path / "model").relations) == sorted({relation.upper() for _, relation, _ in movie_world()})


def _digest(folder: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def test_question_files_parse_topics_and_answers(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("who directed [The Red Door]\tAda Quill|Bo Rook\n\nwhat is [A] to [B]?\n", encoding="utf-8")
    read = read_questions(path)
    assert [(q.topics, q.answers, q.line) for q in read] == [(["The Red Door"], ["Ada Quill", "Bo Rook"], 1),
                                                             (["A", "B"], [], 3)]
    assert mask_topics(read[0].text) == "who directed X"
    assert parse_question("  many   spaces [x]  ") == ("many spaces [x]", ["x"])
    assert len(parse_question("word " * 10_000)[0]) == 2_000


@pytest.mark.parametrize("content, message", [(b"", "holds no question"), (b"\xff\xfe\x00bad", "UTF-8"),
                                              (b"\tanswer only\n", "empty question")])
def test_bad_question_files_are_named_with_the_fix(tmp_path, content, message):
    path = tmp_path / "q.txt"
    path.write_bytes(content)
    with pytest.raises(KgmmError, match=message) as error:
        read_questions(path)
    assert "q.txt" in str(error.value)


def test_training_writes_a_model_and_the_held_out_questions(trained):
    out, result = trained
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "kgmm-qa-model" and config["relations"] == ["DIRECTED_BY", "HAS_GENRE", "STARRED_ACTORS"]
    assert (out / "model.pt").is_file()
    assert result["heldout_files"] == [str(out / "heldout" / "train.txt")]
    held = read_questions(out / "heldout" / "train.txt")
    trained_on = result["trained_on"] + result["validation"]
    assert len(held) + trained_on == result["questions"] + len(held) - (result["questions"] - trained_on)


def test_held_out_questions_are_answered_with_both_hop_counts(trained, world):
    from kgmm.tasks.qa import evaluate_qa

    out, _ = trained
    _, kb, _ = world
    result = evaluate_qa(out, kb, out / "heldout" / "train.txt")
    assert result["questions"] == result["linked"] == result["reachable"] > 10
    assert result["hits1"] >= 0.8, result
    assert result["reachable_f1"] >= 0.6, result


def test_ask_returns_answers_with_the_path_that_supports_each_and_leaves_the_model_alone(trained, world):
    from kgmm.tasks.qa import QAModel, open_qa_graph

    out, _ = trained
    _, kb, _ = world
    before = _digest(out)
    model = QAModel(out)
    graph = open_qa_graph(model, kb=kb)
    triples = movie_world()
    movie = MOVIES[3]
    genre = next(t for h, r, t in triples if h == movie and r == "has_genre")
    result = model.ask(f"what genre is [{movie}]", graph, top_k=3)
    assert result["answers"][0]["name"] == genre
    path = result["answers"][0]["path"]
    assert [(f["head_name"], f["relation"], f["tail_name"]) for f in path] == [(movie, "HAS_GENRE", genre)]
    # two hops, entity found without brackets, case and a typo tolerated in brackets
    director = next(t for h, r, t in triples if h == movie and r == "directed_by")
    linked = model.ask(f"what genres are the films directed by {director}", graph)
    assert linked["linked"][0]["mention"] == director and linked["answers"]
    top = linked["answers"][0]
    steps = top["path"]
    assert 1 <= len(steps) <= 2
    start = steps[0]["tail_name"] if steps[0]["read"] == "backwards" else steps[0]["head_name"]
    end = steps[-1]["head_name"] if steps[-1]["read"] == "backwards" else steps[-1]["tail_name"]
    assert (start, end) == (director, top["name"])  # the chain runs from the linked entity to the answer
    typo = model.ask(f"which movies did [{director.lower()[:-1]}x] direct", graph)
    assert {a["name"] for a in typo["answers"]} >= {h for h, r, t in triples if r == "directed_by" and t == director}
    assert _digest(out) == before


def test_ask_explains_every_kind_of_bad_question(trained, world, tmp_path):
    from kgmm.tasks.qa import QAModel, open_qa_graph

    out, _ = trained
    _, kb, _ = world
    model = QAModel(out)
    graph = open_qa_graph(model, kb=kb)
    assert "empty" in model.ask("   ", graph)["reason"]
    assert "no entity named 'Nobody Atall'" in model.ask("which movies did [Nobody Atall] direct", graph)["reason"]
    assert "[brackets]" in model.ask("who directed it?", graph)["reason"]
    assert "[brackets]" in model.ask("¿quién dirigió la película?", graph)["reason"]
    long = model.ask(f"which movies did [{PEOPLE[0]}] direct " + "really " * 10_000, graph)
    assert any("cut" in warning for warning in long["warnings"])
    not_an_image = tmp_path / "photo.jpg"
    not_an_image.write_text("not a picture")
    with pytest.raises(KgmmError, match="photo.jpg"):
        model.ask(f"what genre is [{MOVIES[0]}]", graph, image=not_an_image)


def test_ask_over_a_store_gives_the_sources_of_each_fact(trained, world, tmp_path):
    from kgmm.schema import Relation, Source
    from kgmm.sources.triples import read_triples
    from kgmm.store import open_store
    from kgmm.tasks.qa import QAModel, open_qa_graph

    out, _ = trained
    _, kb, _ = world
    read = read_triples(kb)
    with open_store(tmp_path / "store") as store:
        store.upsert_sources([Source(id="doc:kb", kind="document", text="the KB", origin="kb.txt", title="the movie KB")])
        store.upsert_entities(read.entities)
        store.upsert_relations([Relation(r.head, r.type, r.tail, 1.0, "triples", ["doc:kb"], ["stated in the KB"])
                                for r in read.relations])
        model = QAModel(out)
        graph = open_qa_graph(model, store=store)
        calls = {"get_relations": 0, "get_sources": 0}
        for name in calls:
            original = getattr(store, name)

            def counted(*args, _original=original, _name=name, **kwargs):
                calls[_name] += 1
                return _original(*args, **kwargs)

            setattr(store, name, counted)
        store.shortest_path = None  # no per-fact path query any more
        result = model.ask(f"what genres are the films directed by [{PEOPLE[0]}]", graph, top_k=3)
        first = model.ask(f"what genre is [{MOVIES[0]}]", graph)
    facts = [fact for answer in result["answers"] for fact in answer["path"]]
    assert len(facts) >= 2 and calls == {"get_relations": 2, "get_sources": 2}  # one of each per question
    assert all(fact["sources"] == ["doc:kb"] and fact["source_titles"] == ["the movie KB"] for fact in facts)
    fact = first["answers"][0]["path"][0]
    assert fact["sources"] == ["doc:kb"] and fact["sentences"] == ["stated in the KB"]
    assert fact["source_titles"] == ["the movie KB"]  # what a reader is shown instead of the id


def test_template_words_are_the_recurring_words_outside_the_topics(trained, world):
    from kgmm.sources.questions import Question
    from kgmm.tasks.qa import EntityLinker, QAModel, template_words

    asked = [Question(f"which films did [{name}] direct", [name]) for name in ("Ann", "Bo", "Cy")]
    asked.append(Question("what rare words about [Ann]", ["Ann"]))
    assert template_words(asked) == ["did", "direct", "films", "which"]
    linker = EntityLinker(["Films", "Ann Lee"], stop_words=["films"])
    assert [span for span, _ in linker.find("which Films did Ann Lee direct")] == ["Ann Lee"]
    assert [span for span, _ in EntityLinker(["Films"]).find("which Films did Ann direct")] == ["Films"]
    out, _ = trained
    assert {"films", "movies", "genre"} <= set(QAModel(out).template_words)  # learnt from the training file


def test_ask_links_each_mention_once_and_reads_a_question_from_stdin(trained, world):
    from typer.testing import CliRunner

    from kgmm.cli import app
    from kgmm.tasks.qa import QAModel, open_qa_graph

    out, _ = trained
    _, kb, _ = world
    model = QAModel(out)
    repeated = "what genre is " + ", ".join([MOVIES[0]] * 30)
    linked = model.ask(repeated, open_qa_graph(model, kb=kb))["linked"]
    assert [item["mention"] for item in linked] == [MOVIES[0]]
    result = CliRunner().invoke(app, ["ask", "-", "--model", str(out), "--kb", str(kb), "--json"],
                                input=f"what genre is [{MOVIES[0]}]\n")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["question"].startswith("what genre is") and answer["answers"]


def test_cli_without_a_model_says_how_to_train_one(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from kgmm.cli import app

    monkeypatch.delenv("KGMM_QA_MODEL", raising=False)
    result = CliRunner().invoke(app, ["ask", "who directed [x]", "--kb", str(tmp_path / "kb.txt")])
    assert result.exit_code != 0
    assert "kgmm train qa" in str(result.exception)


def test_cli_trains_evaluates_and_asks_with_json_on_the_last_line(world, tmp_path):
    from typer.testing import CliRunner

    from kgmm.cli import app

    _, kb, train = world
    out = tmp_path / "cli-model"
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "qa", "--kb", str(kb), "--train", str(train), "--out", str(out),
                                  "--holdout", "0.2", "--epochs", "2", "--steps", "2", "--json"])
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.output.strip().splitlines()[-1])["heldout_files"]
    evaluated = runner.invoke(app, ["eval", "qa", "--model", str(out), "--kb", str(kb), "--questions",
                                    str(out / "heldout" / "train.txt"), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert {"hits1", "f1", "reachable_hits1", "reachable_f1"} <= set(json.loads(evaluated.output.splitlines()[-1]))
    asked = runner.invoke(app, ["ask", f"what genre is [{MOVIES[0]}]", "--model", str(out), "--kb", str(kb), "--json"])
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.output.splitlines()[-1])["linked"][0]["mention"] == MOVIES[0]
    both = runner.invoke(app, ["eval", "qa", "--model", str(out), "--kb", str(kb), "--store", str(tmp_path),
                               "--questions", str(train)])
    assert both.exit_code != 0 and "not both" in str(both.exception)
