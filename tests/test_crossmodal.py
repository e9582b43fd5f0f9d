"""Cross-modal search and the linking of uncaptioned images, over a store built from coloured squares."""

from __future__ import annotations

import json

import pytest

from kgmm.errors import ValidationError
from kgmm.schema import Entity, Mention, Source
from kgmm.store import open_store
from kgmm.tasks.crossmodal import cross_modal_search, link_uncaptioned_images, resolve_align_model


@pytest.fixture
def square_store(tmp_path, squares, trained, monkeypatch):
    """Colour entities, a captioned and an uncaptioned photo, two documents; features cached with the model's."""
    _, _, cache = trained
    monkeypatch.setenv("KGMM_CACHE_DIR", str(cache))
    images = squares.parent / "images"
    store = open_store(tmp_path / "store")
    store.upsert_entities([Entity(f"general:colour:{name}", name, "Colour", "general") for name in ("green", "blue", "yellow")])
    captioned = Source.image((images / "blue-large.png").read_bytes(), "a large blue square", "t", str(images / "blue-large.png"))
    bare = Source.image((images / "green-small.png").read_bytes(), "", "t", str(images / "green-small.png"))
    yellow = Source.image((images / "yellow-large.png").read_bytes(), "", "t", str(images / "yellow-large.png"))
    documents = [Source.document("A small green square on grey.", "t", title="green note"),
                 Source.document("A large yellow square on grey.", "t", title="yellow note")]
    store.upsert_sources([captioned, bare, yellow, *documents])
    yield store, {"captioned": captioned, "bare": bare, "yellow": yellow}
    store.close()


def test_search_by_image_finds_the_matching_entity_document_and_image(square_store, trained, tmp_path):
    store, _ = square_store
    model, _, _ = trained
    # A green between the two stored shades: size (shade) says nothing, so the colour has to decide.
    from PIL import Image

    query = tmp_path / "green-medium.png"
    image = Image.new("RGB", (96, 96), (128, 128, 128))
    image.paste((8, 168, 28), (12, 12, 84, 84))  # conftest's green, 12 darker
    image.save(query)
    result = cross_modal_search(store, model=model, image=query, limit=2)
    assert result["entities"][0]["name"] == "green"
    assert result["documents"][0]["title"] == "green note"
    assert result["images"][0]["path"].endswith("green-small.png")
    assert all(a["score"] >= b["score"] for a, b in zip(result["images"], result["images"][1:], strict=False))


def test_search_images_by_text(square_store, trained):
    store, sources = square_store
    model, _, _ = trained
    result = cross_modal_search(store, model=model, text="a large blue square", kinds=("images",), limit=3)
    assert set(result) == {"query", "model", "images"}
    assert result["images"][0]["id"] == sources["captioned"].id and len(result["images"]) == 3


def test_search_needs_one_query_and_a_model(square_store, trained, monkeypatch, tmp_path):
    store, _ = square_store
    model, _, _ = trained
    with pytest.raises(ValidationError, match="exactly one query"):
        cross_modal_search(store, model=model, text="  ")
    with pytest.raises(ValidationError, match="unknown result kind"):
        cross_modal_search(store, model=model, text="blue", kinds=("videos",))
    monkeypatch.delenv("KGMM_ALIGN_MODEL", raising=False)
    with pytest.raises(ValidationError, match="kgmm train align"):
        resolve_align_model(None)
    with pytest.raises(ValidationError, match="no alignment model"):
        resolve_align_model(tmp_path)
    monkeypatch.setenv("KGMM_ALIGN_MODEL", str(model))
    assert resolve_align_model(None) == model


def test_link_uncaptioned_images_writes_retrieved_mentions_only_for_them(square_store, trained):
    store, sources = square_store
    model, _, _ = trained
    before = store.stats()
    report = link_uncaptioned_images(store, model=model, per_image=1, min_score=-1.0)
    assert report == {"images": 2, "linked": 2, "links": 2, "skipped": []}
    links = {(m.source_id, m.entity_id): m for m in store.iter_mentions()}
    assert links[(sources["bare"].id, "general:colour:green")].provenance == "retrieved"
    assert links[(sources["yellow"].id, "general:colour:yellow")].provenance == "retrieved"
    assert all(m.text == "" and 0 < m.confidence <= 1 for m in links.values())
    assert not any(source == sources["captioned"].id for source, _ in links)  # captioned images are left alone
    after = store.stats()
    assert after.relations == before.relations and after.retrieved_links == 2
    assert link_uncaptioned_images(store, model=model, per_image=1, min_score=-1.0)["links"] == 0  # idempotent
    assert link_uncaptioned_images(store, model=model, min_score=1.0)["linked"] == 0


def test_cli_search_image_and_link_images(square_store, trained, squares):
    from typer.testing import CliRunner

    from kgmm.cli import app

    store, _ = square_store
    location = store.uri
    store.close()
    model, _, _ = trained
    runner = CliRunner()
    result = runner.invoke(app, ["search", "--image", str(squares.parent / "images" / "green-large.png"),
                                 "--store", location, "--model", str(model), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output.strip().splitlines()[-1])
    assert found["entities"][0]["name"] == "green"
    result = runner.invoke(app, ["link-images", "--store", location, "--model", str(model), "--min-score", "-1",
                                 "-k", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["links"] == 2
    result = runner.invoke(app, ["search", "green", "--store", location])
    assert "retrieved link, similarity" in result.output


def test_mention_kinds_are_not_confused(square_store):
    store, sources = square_store
    with pytest.raises(ValidationError, match="expected one of"):
        store.upsert_mentions([Mention("general:colour:green", sources["bare"].id, 0, 0, "", "", provenance="guessed")])


def test_cli_ingest_with_align_model_links_uncaptioned_images(tmp_path, squares, trained, monkeypatch):
    from typer.testing import CliRunner

    from kgmm.cli import app

    model, _, cache = trained
    monkeypatch.setenv("KGMM_CACHE_DIR", str(cache))
    manifest = tmp_path / "photos.jsonl"
    images = squares.parent / "images"
    manifest.write_text(json.dumps({"image": str(images / "green-small.png"), "caption": ""}) + "\n"
                        + json.dumps({"image": str(images / "blue-large.png"), "caption": "A blue square."}) + "\n")
    runner = CliRunner()
    missing = runner.invoke(app, ["ingest", str(manifest), "--store", str(tmp_path / "s"), "--align-model",
                                  str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and not (tmp_path / "s").exists()  # checked before anything is written
    result = runner.invoke(app, ["ingest", str(manifest), "--store", str(tmp_path / "s"), "--align-model", str(model),
                                 "--json"])
    assert result.exit_code == 0, result.output
    links = json.loads(result.output.strip().splitlines()[-1])["image_links"]
    assert links["images"] == 1 and links["skipped"] == []
