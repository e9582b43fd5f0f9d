"""The Bolt server dies in the middle of an ingest's write: nothing half-written stays behind, and after a
restart the same ingest, run again, gives the graph a clean run gives."""

from __future__ import annotations

import pytest

from kgmm.app.ingest import ingest
from kgmm.errors import StoreError
from kgmm.store.neo4j import Neo4jStore

pytestmark = pytest.mark.bolt


def _snapshot(store) -> tuple:
    relations = sorted((r.head, r.type, r.tail, tuple(sorted(r.sources)), tuple(r.sentences)) for r in store.iter_relations())
    entities = sorted((e.id, e.name, tuple(sorted(e.aliases))) for e in store.iter_entities())
    return store.stats(), relations, entities


@pytest.mark.parametrize("kill_at", [3, 11])
def test_server_killed_mid_write_then_rerun_matches_a_clean_run(
    tmp_path, samples, medical_extractor, bolt_store_factory, kill_at
):
    from conftest import BOLT_PASSWORD, load_bolt_server_script

    notes = samples / "medical"
    clean = bolt_store_factory(2)
    ingest([notes], clean, domain="medical", extractor=medical_extractor, batch_size=2)
    expected = _snapshot(clean)
    assert expected[0].relations > 0 and expected[0].documents > 0

    script = load_bolt_server_script()
    server = script.start(tmp_path / "server", password=BOLT_PASSWORD)
    try:
        store = Neo4jStore(server.uri, user=server.user, password=server.password, database=server.database,
                           retry_seconds=1.0, connection_timeout=2.0)
        writes = {"n": 0}  # statements that write rows
        original = store._write_rows

        def write_then_die(tx, query, rows):
            writes["n"] += bool(rows)
            if writes["n"] == kill_at and rows:
                original(tx, query, rows)  # part of this transaction reaches the server ...
                server.stop(kill=True)  # ... which dies before the commit
            return original(tx, query, rows)

        store._write_rows = write_then_die
        with pytest.raises(StoreError) as error:
            ingest([notes], store, domain="medical", extractor=medical_extractor, batch_size=2)
        assert server.uri in str(error.value) and "run the command again" in str(error.value)
        store.close()

        server = script.start(tmp_path / "server", password=BOLT_PASSWORD, bolt_port=server.bolt_port,
                              http_port=server.http_port)
        with Neo4jStore(server.uri, user=server.user, password=server.password, database=server.database) as again:
            partial = again.stats()
            assert partial.documents < expected[0].documents  # the run really was cut short
            ingest([notes], again, domain="medical", extractor=medical_extractor, batch_size=2)
            assert _snapshot(again) == expected
    finally:
        server.stop()
