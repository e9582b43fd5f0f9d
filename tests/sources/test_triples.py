"""The triples reader: both separators, relation types, entity ids and names, and bad lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgmm.errors import SourceError
from kgmm.schema import entity_id, is_valid_label
from kgmm.sources.triples import read_triples, relation_type, triple_entity_id


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_triples_pipe_file_makes_entities_and_typed_relations(tmp_path):
    path = write(tmp_path / "kb.txt", "Jack Frost|starred_actors|Scott MacDonald\n\nJack Frost|release_year|1997\n")

    read = read_triples(path)

    jack = entity_id("general", "Concept", "Jack Frost")
    assert [e.id for e in read.entities] == [jack, "general:concept:scott macdonald", "general:concept:1997"]
    assert [(e.name, e.type, e.domain) for e in read.entities][0] == ("Jack Frost", "Concept", "general")
    assert [r.key for r in read.relations] == [
        (jack, "STARRED_ACTORS", "general:concept:scott macdonald"),
        (jack, "RELEASE_YEAR", "general:concept:1997"),
    ]
    first = read.relations[0]
    assert (first.confidence, first.extractor, first.sources, first.sentences) == (1.0, "triples", [], [])
    assert read.relation_names == {"STARRED_ACTORS": "starred_actors", "RELEASE_YEAR": "release_year"}


def test_read_triples_tab_file_keeps_pipes_in_names_and_takes_domain_and_type(tmp_path):
    path = write(tmp_path / "train.txt", "/m/01\t/film/film/genre\tDrama|Comedy\r\n/m/02\t/film/film/genre\t/m/01\r\n")

    read = read_triples(path, domain="fb", entity_type="Node")

    assert [r.type for r in read.relations] == ["FILM_FILM_GENRE", "FILM_FILM_GENRE"]
    assert [e.name for e in read.entities] == ["/m/01", "Drama|Comedy", "/m/02"]
    assert read.relations[1].tail == read.relations[0].head == triple_entity_id("/m/01", domain="fb", entity_type="Node")
    assert read.entities[0].id.startswith("fb:node:")


def test_read_triples_folds_spellings_of_one_name_into_aliases(tmp_path):
    path = write(tmp_path / "kb.txt", "A|directed_by|Kevin Bacon\nB|starred_actors|kevin bacon\nC|has_tags|$\n")

    read = read_triples(path)

    bacon = [e for e in read.entities if e.name == "Kevin Bacon"]
    assert len(bacon) == 1 and bacon[0].aliases == ["kevin bacon"]
    assert read.relations[0].tail == read.relations[1].tail == bacon[0].id
    # a name that normalises to nothing keeps itself as the id's last part, so it stays distinct
    assert read.relations[2].tail == "general:concept:$" == triple_entity_id("$")


def test_read_triples_reports_a_malformed_line_with_file_and_line(tmp_path):
    path = write(tmp_path / "kb.txt", "A|likes|B\n\nA likes C\n")

    with pytest.raises(SourceError) as raised:
        read_triples(path)

    assert raised.value.line == 3 and raised.value.path == str(path)
    assert str(raised.value).startswith(f"{path}:3: expected 3 fields separated by |")
    assert "fix or remove this line" in str(raised.value)


def test_read_triples_rejects_empty_fields_unknown_separators_and_missing_files(tmp_path):
    with pytest.raises(SourceError, match=r":2: empty head or tail"):
        read_triples(write(tmp_path / "a.txt", "A|likes|B\n |likes|C\n"))
    with pytest.raises(SourceError, match=r":1: expected triples as head\|relation\|tail"):
        read_triples(write(tmp_path / "b.txt", "A likes B\n"))
    with pytest.raises(SourceError, match="no such triples file"):
        read_triples(tmp_path / "missing.txt")


def test_relation_type_normalises_names_and_refuses_the_unusable():
    assert relation_type("written_by") == "WRITTEN_BY"
    assert relation_type("has imdb-rating") == "HAS_IMDB_RATING"
    assert relation_type("/people/person/nationality") == "PEOPLE_PERSON_NATIONALITY"
    assert relation_type("placeOfBirth") == "PLACE_OF_BIRTH" and relation_type("P31") == "P31"
    long_a, long_b = "/a" * 40 + "/x", "/a" * 40 + "/y"
    assert relation_type(long_a) != relation_type(long_b)
    assert all(is_valid_label(relation_type(name)) for name in (long_a, long_b))
    for bad in ("__", "1st_place"):
        with pytest.raises(ValueError, match="no valid relation type"):
            relation_type(bad)


def test_read_triples_refuses_two_relation_names_of_one_type(tmp_path):
    path = write(tmp_path / "kb.txt", "A|is-a|B\nB|is_a|C\n")

    with pytest.raises(SourceError, match=r":2: relation names 'is-a' and 'is_a' both become the relation type IS_A"):
        read_triples(path)


def test_read_triples_reads_the_metaqa_kb(shared_data):
    read = read_triples(shared_data / "metaqa" / "kb.txt")

    assert len(read.relations) == 129_413
    assert len(read.relation_names) == 9 and "WRITTEN_BY" in read.relation_names
