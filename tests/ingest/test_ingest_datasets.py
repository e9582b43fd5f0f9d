"""Ingest of the shared data sets end to end (slow: full pipelines over hundreds of sources)."""

from __future__ import annotations

import pytest

from kgmm.app.ingest import ingest
from kgmm.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]


def test_ingest_medpix_cases_and_captioned_images(tmp_path, shared_data, extractor_for):
    with open_store(tmp_path / "store") as store:
        report = ingest([shared_data / "medpix"], store, extractor=extractor_for("medical"), progress=False)
        stats = store.stats()
        assert report.problems == []
        assert (stats.documents, stats.images) == (69, 200)
        assert stats.relations_by_type.get("HAS_SYMPTOM", 0) > 0
        again = ingest([shared_data / "medpix"], store, extractor=extractor_for("medical"), progress=False)
        assert again.sources_new == 0 and store.stats() == stats
        image_mentions = store.cypher(
            "MATCH (:Entity)-[m:MENTIONED_IN]->(s:Source) WHERE s.kind = 'image' RETURN count(m) AS n"
        )
        assert image_mentions[0]["n"] > 100


def test_ingest_fashion_products_link_to_catalogue_attributes(tmp_path, shared_data, extractor_for):
    with open_store(tmp_path / "store") as store:
        ingest([shared_data / "fashion" / "products_train.csv"], store, extractor=extractor_for("retail"), progress=False)
        stats = store.stats()
        assert stats.images == 461
        rows = store.cypher(
            "MATCH (p:Entity)-[:HAS_COLOUR]->(c:Entity) WHERE p.type = 'Product' RETURN count(DISTINCT p) AS n"
        )
        assert rows[0]["n"] >= 400


def test_ingest_flickr8k_captions_become_concepts(tmp_path, shared_data, extractor_for):
    with open_store(tmp_path / "store") as store:
        ingest([shared_data / "flickr8k"], store, extractor=extractor_for("general"), progress=False)
        assert store.stats().images == 300
        dog = store.find_entities("dog")[0]
        assert dog.entity.type == "Concept" and len(store.mentions(dog.entity.id, limit=50)) >= 10
