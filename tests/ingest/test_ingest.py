"""Ingest end to end on the embedded store: idempotent, resumable, tolerant of bad input."""

from __future__ import annotations

import json

import pytest

from kgmm.app.ingest import ingest
from kgmm.schema import Source
from kgmm.store import open_store, records


def _counts(store) -> tuple[int, int, int, int, int]:
    stats = store.stats()
    return stats.entities, stats.relations, stats.documents, stats.images, stats.mentions


def _write_notes(folder, texts):
    folder.mkdir(parents=True, exist_ok=True)
    for index, text in enumerate(texts):
        (folder / f"note-{index}.txt").write_text(text, encoding="utf-8")
    return folder


NOTES = [
    "John Wilkes Booth killed Abraham Lincoln in Washington.",
    "Tim Cook, the chief executive of Apple, spoke in Cupertino, California.",
    "Marie Curie worked in Paris. She was born in Warsaw.",
]


def test_ingest_twice_adds_nothing(tmp_path, general_extractor):
    notes = _write_notes(tmp_path / "notes", NOTES)
    with open_store(tmp_path / "store") as store:
        first = ingest([notes], store, extractor=general_extractor, progress=False)
        counts = _counts(store)
        second = ingest([notes], store, extractor=general_extractor, progress=False)
        assert first.sources_new == 3 and second.sources_new == 0 and second.sources_known == 3
        assert second.entities_new == second.relations_new == second.mentions_new == 0
        assert _counts(store) == counts


def test_ingest_interrupted_then_rerun_matches_clean_run(tmp_path, general_extractor):
    notes = _write_notes(tmp_path / "notes", NOTES)
    with open_store(tmp_path / "clean") as store:
        ingest([notes], store, extractor=general_extractor, progress=False)
        clean = _counts(store)

    # Simulate a crash after entities, relations and mentions of a batch were written, before its sources.
    sources = [Source.document(text, str(notes / f"note-{i}.txt"), title=f"note-{i}.txt") for i, text in enumerate(NOTES)]
    extractions = list(general_extractor.extract(sources))
    entities = [entity for e in extractions for entity in e.entities]
    relations = list(records.merge_relations(r for e in extractions for r in e.relations).values())
    with open_store(tmp_path / "crashed") as store:
        store.upsert_entities(entities)
        store.upsert_relations(relations)
        store.upsert_mentions([m for e in extractions for m in e.mentions])
        ingest([notes], store, extractor=general_extractor, progress=False)
        assert _counts(store) == clean
        for relation in relations:
            stored = [r for r in store.neighbors(relation.head).relations if r.key == relation.key]
            assert len(stored) == 1 and sorted(stored[0].sources) == sorted(relation.sources)


def test_ingest_relation_sources_accumulate_across_documents(tmp_path, general_extractor):
    notes = _write_notes(tmp_path / "notes", ["John Wilkes Booth killed Abraham Lincoln.", "In 1865, John Wilkes Booth killed Abraham Lincoln at a theatre."])
    with open_store(tmp_path / "store") as store:
        ingest([notes], store, extractor=general_extractor, progress=False)
        booth = store.find_entities("John Wilkes Booth")[0].entity
        facts = [r for r in store.neighbors(booth.id).relations if r.type == "KILLED"]
        assert len(facts) == 1
        assert len(facts[0].sources) == 2


def test_ingest_bad_inputs_are_reported_and_the_rest_is_kept(tmp_path, general_extractor):
    folder = _write_notes(tmp_path / "in", NOTES[:1])
    (folder / "empty.txt").write_text("", encoding="utf-8")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02\xff" * 64)
    (folder / "latin1.txt").write_bytes("Caf\xe9 au lait in Paris.".encode("latin-1"))
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(
        json.dumps({"text": "Barack Obama visited Berlin."}) + "\n{not json\n" + json.dumps({"text": "Angela Merkel lives in Berlin."}) + "\n",
        encoding="utf-8",
    )
    problems = []
    with open_store(tmp_path / "store") as store:
        before = None
        report = ingest([folder, manifest], store, extractor=general_extractor, progress=False, on_problem=problems.append)
        before = _counts(store)
        assert report.sources_new == 3
        assert len(problems) == 4
        messages = "\n".join(str(p) for p in problems)
        for name in ("empty.txt", "binary.txt", "latin1.txt", "rows.jsonl:2"):
            assert name in messages
        # A second run with the same bad input still loses and duplicates nothing.
        ingest([folder, manifest], store, extractor=general_extractor, progress=False)
        assert _counts(store) == before


def test_ingest_hostile_entity_names_round_trip(tmp_path, general_extractor):
    text = 'Robert "Bobby` Tables}" works for Acme Corp. MATCH (n) DETACH DELETE n; said Acme Corp.'
    notes = _write_notes(tmp_path / "notes", [text])
    with open_store(tmp_path / "store") as store:
        ingest([notes], store, extractor=general_extractor, progress=False)
        stats = store.stats()
        assert stats.documents == 1
        sources = store.get_sources([Source.document(text, "x").id])
        assert next(iter(sources.values())).text == text


@pytest.mark.parametrize("domain", ["medical", "retail"])
def test_ingest_samples_builds_a_connected_graph(tmp_path, samples, domain, extractor_for):
    inputs = {"medical": ["medical/notes", "medical/images.jsonl"], "retail": ["retail/products.csv", "retail/images.csv"]}[domain]
    with open_store(tmp_path / "store") as store:
        report = ingest([samples / rel for rel in inputs], store, extractor=extractor_for(domain), progress=False)
        stats = store.stats()
    assert report.problems == []
    assert stats.images >= 3 and stats.documents >= 5
    assert stats.relations >= 5


def _graph(store) -> tuple:
    return (sorted((e.id, e.type) for e in store.iter_entities()),
            sorted((r.head, r.type, r.tail, tuple(r.sources)) for r in store.iter_relations()),
            sorted((m.entity_id, m.source_id, m.start, m.end) for m in store.iter_mentions()))


MEDICAL_NOTES = ["Metformin is used to treat diabetes.", "Oseltamivir treats influenza. The patient has a fever."]


def test_ingest_with_another_domain_says_so_and_reextract_applies_it(tmp_path, general_extractor, medical_extractor):
    notes = _write_notes(tmp_path / "notes", MEDICAL_NOTES)
    with open_store(tmp_path / "fresh") as store:
        ingest([notes], store, extractor=medical_extractor, progress=False)
        fresh = _graph(store)
    with open_store(tmp_path / "store") as store:
        ingest([notes], store, extractor=general_extractor, progress=False)
        unchanged = ingest([notes], store, extractor=medical_extractor, progress=False)
        assert unchanged.other_domains == {"general": 2} and unchanged.sources_new == 0
        again = ingest([notes], store, extractor=medical_extractor, progress=False, reextract=True)
        assert (again.sources_reextracted, again.sources_new, again.other_domains) == (2, 0, {})
        assert _graph(store) == fresh  # nothing of the general pack's extraction is left
        assert set(store.source_domains(s.id for s in store.iter_sources()).values()) == {"medical"}


def test_repair_rebuilds_entities_deleted_by_hand_from_the_stored_text(tmp_path, medical_extractor, monkeypatch):
    from kgmm.app.ingest import repair
    from kgmm.extract import pipeline

    monkeypatch.setattr(pipeline, "Extractor", lambda domain, **_: medical_extractor)
    notes = _write_notes(tmp_path / "notes", MEDICAL_NOTES)
    with open_store(tmp_path / "store") as store:
        ingest([notes], store, extractor=medical_extractor, progress=False)
        whole = _graph(store)
        store.cypher("MATCH (n:Entity) DETACH DELETE n", write=True)
        assert ingest([notes], store, extractor=medical_extractor, progress=False).sources_new == 0  # known: no help
        report = repair(store, progress=False)
        assert report.sources_reextracted == 2 and _graph(store) == whole


def test_ingest_nothing_readable_raises_before_the_store_is_touched(tmp_path, general_extractor):
    from kgmm.app.ingest import plan_ingest
    from kgmm.errors import SourceError

    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    problems = []
    with pytest.raises(SourceError, match="nothing to ingest"):
        plan_ingest([tmp_path / "missing", tmp_path / "empty.txt"], extractor=general_extractor,
                    on_problem=problems.append)
    assert len(problems) == 2


def test_ingest_batches_are_bounded_by_characters_and_committed_as_they_go(tmp_path, general_extractor, monkeypatch):
    from kgmm.app import ingest as ingest_module
    from kgmm.app.ingest import IngestInterrupted

    sentence = "Marie Curie worked in Paris with Pierre Curie. "
    (tmp_path / "long.txt").write_text(sentence * 6_000, encoding="utf-8")  # 282k characters: 3 parts
    monkeypatch.setattr(ingest_module, "MAX_BATCH_CHARS", 90_000)  # each part of the file is a batch of its own
    batches = [len(batch) for batch in ingest_module.batches(iter(
        Source.document(sentence * 3_000, f"p{i}") for i in range(3)), 256, 150_000)]
    assert batches == [2, 1]

    calls = []
    real = general_extractor.extract

    def interrupted_after_one_batch(sources):
        calls.append(len(sources))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(sources)

    monkeypatch.setattr(general_extractor, "extract", interrupted_after_one_batch)
    with open_store(tmp_path / "store") as store, pytest.raises(IngestInterrupted) as stopped:
        ingest([tmp_path / "long.txt"], store, extractor=general_extractor, progress=False, batch_size=256)
    assert calls == [1, 1] and stopped.value.report.sources_new == 1  # the first batch was committed
    monkeypatch.setattr(general_extractor, "extract", real)
    with open_store(tmp_path / "store") as store:
        assert store.stats().documents == 1
        rest = ingest([tmp_path / "long.txt"], store, extractor=general_extractor, progress=False)
        assert (rest.sources_known, rest.sources_new, store.stats().documents) == (1, 2, 3)


def test_ingest_lists_each_input_folder_once(tmp_path, general_extractor, monkeypatch):
    import kgmm.sources

    notes = _write_notes(tmp_path / "notes", NOTES)
    listed = []
    children = kgmm.sources._children
    monkeypatch.setattr(kgmm.sources, "_children", lambda folder: listed.append(folder) or children(folder))
    with open_store(tmp_path / "store") as store:
        report = ingest([notes], store, extractor=general_extractor, progress=False)
    assert report.sources_read == len(NOTES)
    assert listed == [notes]
