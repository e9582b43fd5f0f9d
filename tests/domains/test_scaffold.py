"""kgmm domain init / check: a scaffolded pack loads, extracts its own lexicon and ranks its own labels."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kgmm.errors import DomainError


def test_init_writes_a_pack_that_loads_extracts_and_ranks(tmp_path):
    from kgmm.domains.scaffold import check_domain, init_domain
    from kgmm.sources.cases import Case
    from kgmm.tasks.diagnosis import open_diagnosis_model

    folder = tmp_path / "cardio"
    result = init_domain("cardio", folder)
    assert result["files"] == ["README.md", "knowledge.json", "lexicon.tsv", "pack.json"]
    assert result["lexicon_entries"] == 2 and result["knowledge_labels"] == 1
    # The user fills it in: a new finding with a synonym, and a label that expects it.
    with (folder / "lexicon.tsv").open("a", encoding="utf-8") as handle:
        handle.write("Finding\tchest tightness\tpressure in the chest\t\n")
    knowledge = json.loads((folder / "knowledge.json").read_text(encoding="utf-8"))
    knowledge["edges"]["angina"] = {"cardio:finding:chest tightness": "HAS_FINDING"}
    (folder / "knowledge.json").write_text(json.dumps(knowledge), encoding="utf-8")
    assert check_domain(folder)["lexicon_entries"] == 3
    model = open_diagnosis_model(None, folder / "knowledge.json", domain=str(folder))
    result = model.diagnose(Case("c", None, text="She feels pressure in the chest when walking."))
    assert result["diagnoses"][0]["label"] == "angina"
    assert result["diagnoses"][0]["supports"][0]["name"] == "chest tightness"
    negated = model.diagnose(Case("c", None, text="No pressure in the chest."))
    assert [item["name"] for item in negated["case"]["absent"]] == ["chest tightness"]


def test_init_from_a_built_in_pack_and_bad_requests(tmp_path):
    from kgmm.domains.scaffold import init_domain

    shop = init_domain("shop", tmp_path / "shop", base="retail")
    assert shop["lexicon_entries"] > 100 and shop["relations"] > 1
    pack = json.loads((tmp_path / "shop" / "pack.json").read_text(encoding="utf-8"))
    assert pack["name"] == "shop" and pack["lexicons"][-1] == "lexicon.tsv"
    with pytest.raises(DomainError, match="lower-case letters"):
        init_domain("Bad Name", tmp_path / "x")
    with pytest.raises(DomainError, match="built-in domain"):
        init_domain("medical", tmp_path / "y")
    with pytest.raises(DomainError, match="not an empty folder"):
        init_domain("other", tmp_path / "shop")
    with pytest.raises(DomainError, match="no built-in domain 'nope'"):
        init_domain("other", tmp_path / "z", base="nope")


def test_cli_domain_init_and_check(tmp_path):
    from kgmm.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["domain", "init", "lab", "--dir", str(tmp_path / "lab"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["domain"] == "lab"
    checked = runner.invoke(app, ["domain", "check", str(tmp_path / "lab"), "--json"])
    assert json.loads(checked.output.strip().splitlines()[-1])["lexicon_entries"] == 2
    (tmp_path / "lab" / "lexicon.tsv").write_text("type\tname\nNope\n", encoding="utf-8")
    failed = runner.invoke(app, ["domain", "check", str(tmp_path / "lab")])
    assert failed.exit_code != 0 and "lacks a type or a name" in str(failed.exception)


def test_load_domain_attribute_hierarchy_must_name_pack_types(tmp_path):
    from kgmm.domains import load_domain

    pack = {"name": "shop", "entity_types": ["Product", "Aisle"], "attribute_hierarchy": [["Product", "Shelf"]]}
    (tmp_path / "pack.json").write_text(json.dumps(pack), encoding="utf-8")
    with pytest.raises(DomainError, match=r"attribute_hierarchy names unknown entity types \['Shelf'\]"):
        load_domain(str(tmp_path))
    pack["attribute_hierarchy"] = [["Product", "Aisle"]]
    (tmp_path / "pack.json").write_text(json.dumps(pack), encoding="utf-8")
    load_domain.cache_clear()
    assert load_domain(str(tmp_path)).attribute_hierarchy == (("Product", "Aisle"),)
