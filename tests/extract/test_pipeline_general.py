"""The general pack: statistical entities, caption concepts, schema-constrained relations."""

from __future__ import annotations

from kgmm.schema import Source


def _extract(extractor, text: str, **kwargs):
    return next(extractor.extract([Source.document(text, "test.txt", **kwargs)]))


def _triples(extraction) -> set[tuple[str, str, str]]:
    names = {e.id: e.name for e in extraction.entities}
    return {(names[r.head], r.type, names[r.tail]) for r in extraction.relations}


def test_extract_relations_follow_schema_and_voice(general_extractor):
    active = _extract(general_extractor, "John Wilkes Booth killed Abraham Lincoln in Washington.")
    assert ("John Wilkes Booth", "KILLED", "Abraham Lincoln") in _triples(active)
    passive = _extract(general_extractor, "Abraham Lincoln was killed by John Wilkes Booth.")
    assert ("John Wilkes Booth", "KILLED", "Abraham Lincoln") in _triples(passive)


def test_extract_works_for_with_trigger(general_extractor):
    extraction = _extract(general_extractor, "Tim Cook, the chief executive of Apple, spoke on Monday.")
    assert ("Tim Cook", "WORKS_FOR", "Apple") in _triples(extraction)


def test_extract_located_in_from_apposition(general_extractor):
    extraction = _extract(general_extractor, "The company opened an office in Cupertino, California.")
    assert ("Cupertino", "LOCATED_IN", "California") in _triples(extraction)


def test_extract_caption_concepts_are_lemmatised(general_extractor):
    extraction = _extract(general_extractor, "Two dogs are running through the snow.")
    ids = {e.id for e in extraction.entities}
    assert {"general:concept:dog", "general:concept:snow"} <= ids


def test_extract_mentions_keep_offsets_and_sentence(general_extractor):
    text = "Marie Curie worked in Paris. She won two prizes."
    extraction = _extract(general_extractor, text)
    mention = next(m for m in extraction.mentions if m.text == "Marie Curie")
    assert text[mention.start : mention.end] == "Marie Curie"
    assert mention.sentence == "Marie Curie worked in Paris."
    assert mention.source_id == extraction.source.id


def test_extract_relations_cite_their_source(general_extractor):
    extraction = _extract(general_extractor, "John Wilkes Booth killed Abraham Lincoln.")
    relation = extraction.relations[0]
    assert relation.sources == [extraction.source.id]
    assert relation.sentences == ["John Wilkes Booth killed Abraham Lincoln."]
    assert relation.extractor == "dep_pattern" and 0 < relation.confidence <= 1


def test_extract_hostile_text_is_kept_verbatim(general_extractor):
    text = 'Robert "Bobby\' `DROP` {x} MATCH (n) DETACH DELETE n" Tables works for Acme Corp.'
    extraction = _extract(general_extractor, text)
    assert extraction.source.text == text
    for mention in extraction.mentions:
        assert text[mention.start : mention.end] == mention.text
