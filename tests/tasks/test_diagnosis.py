"""Diagnosis end to end on a small generated DDXPlus-format world and on free-text cases: read, rank from the
graph alone, train, evaluate, explain, the CLI, and bad input."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kgmm.domains.knowledge import read_ddxplus_knowledge
from kgmm.errors import KgmmError, SourceError, ValidationError
from kgmm.sources.cases import Case, read_cases

# Four conditions over twelve yes/no evidences and one categorical one (E_12, default V_0 = "nowhere").
CONDITIONS = {
    "Alpha fever": {"symptoms": ["E_0", "E_1", "E_2"], "antecedents": ["E_9"]},
    "Beta cough": {"symptoms": ["E_3", "E_4", "E_5", "E_12"], "antecedents": ["E_10"]},
    "Gamma rash": {"symptoms": ["E_6", "E_7", "E_0"], "antecedents": ["E_11"]},
    "Delta ache": {"symptoms": ["E_8", "E_12", "E_1"], "antecedents": ["E_10", "E_9"]},
}
QUESTIONS = ["Do you have a fever?", "Do you have chills?", "Are you tired?", "Do you have a cough?",
             "Do you have a sore throat?", "Do you have a runny nose?", "Do you have a rash?",
             "Do you have itchy skin?", "Do you have muscle pain?", "Do you smoke cigarettes?",
             "Have you travelled recently?", "Do you have pets?"]


def write_world(folder: Path, patients: int = 240, seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    evidences = {f"E_{i}": {"name": f"E_{i}", "question_en": q, "data_type": "B", "default_value": 0,
                            "value_meaning": {}} for i, q in enumerate(QUESTIONS)}
    evidences["E_12"] = {"name": "E_12", "question_en": "Where is the pain?", "data_type": "M", "default_value": "V_0",
                         "value_meaning": {"V_0": {"en": "nowhere"}, "V_1": {"en": "head"}, "V_2": {"en": "back"}}}
    conditions = {name: {"condition_name": name, "symptoms": {e: {} for e in spec["symptoms"]},
                         "antecedents": {e: {} for e in spec["antecedents"]}} for name, spec in CONDITIONS.items()}
    (folder / "release_evidences.json").write_text(json.dumps(evidences), encoding="utf-8")
    (folder / "release_conditions.json").write_text(json.dumps(conditions), encoding="utf-8")
    rows = [["age", "sex", "diagnosis", "features"]]
    names = sorted(CONDITIONS)
    for i in range(patients):
        label = names[i % len(names)]
        spec = CONDITIONS[label]
        codes = [e for e in spec["symptoms"] + spec["antecedents"] if rng.random() < 0.7] or [spec["symptoms"][0]]
        codes = ["E_12_@_V_1" if code == "E_12" else code for code in codes]
        if "E_12_@_V_1" not in codes:
            codes.append("E_12_@_V_0")
        rows.append([str(rng.randint(5, 90)), rng.choice("MF"), label, str(codes)])
    path = folder / "patients.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_world(tmp_path_factory.mktemp("ddx"))


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    from kgmm.tasks.diagnosis import train_diagnosis

    out = tmp_path_factory.mktemp("model") / "ddx"
    return out, train_diagnosis(world, "ddxplus", out, epochs=60, progress=False)


def _digest(folder: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_ddxplus_reader_maps_codes_to_lexicon_ids_and_defaults_to_absent(world):
    cases = read_cases(world, "ddxplus")
    assert len(cases) == 240 and all(case.closed_world and case.label for case in cases)
    with_pain = next(case for case in cases if "DDXPLUS:E_12=V_1" in case.present)
    assert "DDXPLUS:E_12" in with_pain.present  # a non-default answer is the evidence present
    without = next(case for case in cases if "DDXPLUS:E_12=V_0" in case.present)
    assert "DDXPLUS:E_12" not in without.present  # "nowhere" is the default: not a finding
    assert with_pain.attributes["sex"] in {"M", "F"} and isinstance(with_pain.attributes["age"], float)
    knowledge = read_ddxplus_knowledge(world)
    assert knowledge.edges["Alpha fever"] == {"DDXPLUS:E_0": "HAS_SYMPTOM", "DDXPLUS:E_1": "HAS_SYMPTOM",
                                              "DDXPLUS:E_2": "HAS_SYMPTOM", "DDXPLUS:E_9": "HAS_RISK_FACTOR"}
    assert knowledge.finding_names["DDXPLUS:E_12=V_1"].endswith(": head")


def test_knowledge_only_ranks_from_the_graph_alone(world):
    from kgmm.tasks.diagnosis import evaluate_diagnosis, open_diagnosis_model

    model = open_diagnosis_model(None, world.parent / "release_conditions.json")
    metrics = evaluate_diagnosis(model, world, "ddxplus")
    assert metrics["top3"] >= 0.9 and metrics["top1"] >= 0.6 and metrics["model"] == "knowledge-only"
    # Fever + chills + fatigue, no rash: Alpha first; Gamma (fever, but rash expected) is argued against.
    result = model.diagnose(Case("c", None, ["DDXPLUS:E_0", "DDXPLUS:E_1", "DDXPLUS:E_2"], ["DDXPLUS:E_6"]), top_k=4)
    first = result["diagnoses"][0]
    assert first["label"] == "Alpha fever"
    assert {item["finding"] for item in first["supports"]} == {"DDXPLUS:E_0", "DDXPLUS:E_1", "DDXPLUS:E_2"}
    gamma = next(entry for entry in result["diagnoses"] if entry["label"] == "Gamma rash")
    assert [item["finding"] for item in gamma["against"]] == ["DDXPLUS:E_6"]
    assert abs(sum(entry["probability"] for entry in result["diagnoses"]) - 1.0) < 0.01


def test_training_holds_cases_out_and_evaluates_on_them(trained, world):
    from kgmm.tasks.diagnosis import DiagnosisModel, evaluate_diagnosis

    out, summary = trained
    heldout = Path(summary["heldout_file"])
    assert summary["heldout"] == 48 and summary["train"] == 192 and summary["graph_source"] == "knowledge"
    assert (heldout.parent / "release_evidences.json").is_file()  # the held-out file reads on its own
    held_ids = {case.line for case in read_cases(heldout, "ddxplus")}
    assert len(held_ids) == 48
    model = DiagnosisModel.load(out)
    metrics = evaluate_diagnosis(model, heldout, "ddxplus")
    assert metrics["cases"] == 48 and metrics["top1"] >= 0.85 and metrics["top3"] >= 0.95
    assert 0.0 <= metrics["ece"] <= 0.2 and 0.0 < metrics["macro_f1"] <= 1.0
    assert model.temperature > 0 and model.modalities["findings"] == len(model.findings) + 4  # age, sex


def test_diagnose_explains_with_present_and_missing_findings_and_leaves_the_model_alone(trained):
    from kgmm.tasks.diagnosis import DiagnosisModel

    out, _ = trained
    before = _digest(out)
    model = DiagnosisModel.load(out)
    present = model.resolve_findings(["E_3", "Sore Throat", "DDXPLUS:E_10"])
    assert present == ["DDXPLUS:E_3", "DDXPLUS:E_4", "DDXPLUS:E_10"]
    result = model.diagnose(Case("c", None, present, model.resolve_findings(["E_5"]), attributes={"age": 40}))
    first = result["diagnoses"][0]
    assert first["label"] == "Beta cough" and first["probability"] > 0.5
    assert {item["finding"] for item in first["supports"]} <= set(present)
    assert "DDXPLUS:E_5" in {item["finding"] for item in first["against"]}
    assert all(item["weight"] > 0 for item in first["supports"] + first["against"])
    assert _digest(out) == before and result["warnings"] == []
    ignored = model.diagnose(Case("c", None, present, image=str(out / "weights.pt")))
    assert ignored["warnings"] == ["this model was not trained with images; the image was not used"]
    with pytest.raises(ValidationError, match="unknown finding 'E_99'.*closest"):
        model.resolve_findings(["E_99"])


def test_diagnose_case_resolves_codes_and_names_like_a_user_types_them(world, tmp_path):
    from kgmm.app.diagnose import diagnose_case
    from kgmm.tasks.diagnosis import open_diagnosis_model

    model = open_diagnosis_model(None, world.parent / "release_conditions.json")
    result = diagnose_case(model, findings=["E_0", " e_1", "", "DDXPLUS:E_2"], absent=["E_6"], top_k=2)
    assert [entry["label"] for entry in result["diagnoses"]][:1] == ["Alpha fever"]
    assert [item["finding"] for item in result["case"]["present"]] == ["DDXPLUS:E_0", "DDXPLUS:E_1", "DDXPLUS:E_2"]
    assert [item["finding"] for item in result["case"]["absent"]] == ["DDXPLUS:E_6"]
    with pytest.raises(ValidationError, match="nothing to diagnose"):
        diagnose_case(model, text="  ", findings=[""])
    with pytest.raises(ValidationError, match=f"no image at {tmp_path / 'x.png'}"):
        diagnose_case(model, findings=["E_0"], image=tmp_path / "x.png")


def test_a_case_with_nothing_the_model_knows_gets_no_ranking_unless_asked(world):
    from kgmm.tasks.diagnosis import open_diagnosis_model

    model = open_diagnosis_model(None, world.parent / "release_conditions.json")
    result = model.diagnose(Case("c", None, text="asdkjh qwe zzz"))
    assert result["diagnoses"] == [] and "no finding the model knows was recognised" in result["reason"]
    assert "asdkjh qwe zzz" in result["reason"] and "--rank-anyway" in result["reason"]
    forced = model.diagnose(Case("c", None, text="asdkjh qwe zzz"), rank_anyway=True, top_k=3)
    assert len(forced["diagnoses"]) == 3 and any("prior alone" in w for w in forced["warnings"])
    assert model.diagnose(Case("c", None, ["DDXPLUS:E_6"]))["reason"] is None


@pytest.mark.parametrize("fusion", ["late", "cross-attention"])
def test_other_fusions_and_the_graph_ablation_train(world, tmp_path, fusion):
    from kgmm.tasks.diagnosis import DiagnosisModel, train_diagnosis

    summary = train_diagnosis(world, "ddxplus", tmp_path / fusion, fusion=fusion, use_graph=fusion != "late",
                              epochs=15, progress=False)
    model = DiagnosisModel.load(tmp_path / fusion)
    assert model.config["fusion"] == fusion and (model.net.graph is None) == (fusion == "late")
    assert summary["validation"]["top1"] >= 0.5
    result = model.diagnose(Case("c", None, ["DDXPLUS:E_6", "DDXPLUS:E_7"]))
    assert result["diagnoses"][0]["label"] == "Gamma rash"


def test_free_text_cases_negation_and_a_graph_built_from_the_cases(tmp_path, medical_extractor, monkeypatch):
    from kgmm.tasks import diagnosis
    from kgmm.tasks.diagnosis import DiagnosisModel, train_diagnosis

    monkeypatch.setattr(diagnosis, "_extractor", lambda domain: medical_extractor)
    texts = {
        "flu": ["I have a fever and a cough since yesterday.", "High fever with chills and a dry cough.",
                "Cough, fever and a sore throat.", "My child has a fever and coughs at night."],
        "eczema": ["An itchy rash on my arms, no fever.", "Dry itchy skin with a red rash.",
                   "A rash on my hands that itches, and no cough.", "Itchy skin and a rash behind the knees."],
    }
    path = tmp_path / "cases.jsonl"
    path.write_text("".join(json.dumps({"id": f"{label}{i}", "label": label, "text": text}) + "\n"
                            for i in range(3) for label, group in texts.items() for text in group), encoding="utf-8")
    summary = train_diagnosis(path, "jsonl", tmp_path / "model", holdout=0.0, epochs=40, progress=False)
    assert summary["graph_source"] == "cases" and summary["modalities"] == ["findings", "text"]
    model = DiagnosisModel.load(tmp_path / "model")
    assert any(relation == "OBSERVED_IN_CASES" for edges in model.knowledge.edges.values() for relation in edges.values())
    result = model.diagnose(Case("c", None, text="Fever and cough for two days, no itching."), top_k=2)
    assert result["diagnoses"][0]["label"] == "flu"
    assert {item["name"] for item in result["case"]["present"]} == {"Fever", "Cough"}
    assert [item["name"] for item in result["case"]["absent"]] == ["Pruritus"]
    negated = model.read_text([Case("n", None, text="No fever today.")])[0]
    assert negated.present == [] and len(negated.absent) == 1


def test_metrics_are_computed_not_assumed():
    import torch

    from kgmm.tasks.diagnosis import diagnosis_metrics

    probabilities = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    metrics = diagnosis_metrics(probabilities, [0, 1, 1, None], ["a", "b", "c"])
    assert metrics["top1"] == 0.5 and metrics["top3"] == 0.75 and metrics["unknown_labels"] == 1
    # bins: 0.9 right, 0.7 right, 0.6 wrong, 0.8 wrong -> ECE = (0.1 + 0.3 + 0.6 + 0.8) / 4
    assert metrics["ece"] == pytest.approx(0.45, abs=1e-4)


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("age,sex,diagnosis\n30,M,x\n", "no EVIDENCES column"),
    ("age,sex,diagnosis,features\n30,M,x,\"['E_1'\"\n", "not a list"),
    ("age,sex,diagnosis,features\nforty,M,x,\"['E_1']\"\n", "age 'forty'"),
])
def test_bad_ddxplus_files_name_the_file_line_and_fix(world, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    for name in ("release_evidences.json", "release_conditions.json"):
        (tmp_path / name).write_bytes((world.parent / name).read_bytes())
    with pytest.raises(SourceError, match=message) as error:
        read_cases(path, "ddxplus")
    assert str(path) in str(error.value)


def test_other_bad_inputs(world, tmp_path):
    from kgmm.tasks.diagnosis import DiagnosisModel, load_knowledge, train_diagnosis

    lonely = tmp_path / "lonely" / "patients.csv"
    lonely.parent.mkdir()
    lonely.write_bytes(world.read_bytes())
    with pytest.raises(SourceError, match="release_evidences.json must lie beside"):
        read_cases(lonely, "ddxplus")
    binary = tmp_path / "cases.jsonl"
    binary.write_bytes(b"\x00\x01\x02 not text")
    with pytest.raises(SourceError, match="binary|UTF-8"):
        read_cases(binary, "jsonl")
    nothing = tmp_path / "nothing.jsonl"
    nothing.write_text('{"id": "a", "label": "x"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match="nothing to diagnose from"):
        read_cases(nothing, "jsonl")
    with pytest.raises(SourceError, match="neither a knowledge.json"):
        (tmp_path / "k.json").write_text('{"a": 1}', encoding="utf-8")
        load_knowledge(tmp_path / "k.json")
    with pytest.raises(SourceError, match="kgmm train diagnosis"):
        DiagnosisModel.load(tmp_path)
    one_label = tmp_path / "one.jsonl"
    one_label.write_text('{"label": "x", "findings": ["a"]}\n{"label": "x", "findings": ["b"]}\n', encoding="utf-8")
    with pytest.raises(ValidationError, match="at least two labels"):
        train_diagnosis(one_label, "jsonl", tmp_path / "m", progress=False)
    with pytest.raises(SourceError, match="unknown case format"):
        read_cases(world, "csv")


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.output.strip().splitlines()[-1])


def test_cli_train_eval_diagnose(world, tmp_path):
    from kgmm.cli import app

    runner = CliRunner()
    out = tmp_path / "model"
    trained = _json(runner.invoke(app, ["train", "diagnosis", "--dataset", "ddxplus", "--path", str(world), "--out",
                                        str(out), "--epochs", "40", "--json"]))
    assert trained["heldout"] == 48
    metrics = _json(runner.invoke(app, ["eval", "diagnosis", "--dataset", "ddxplus", "--path", trained["heldout_file"],
                                        "--model", str(out), "--json"]))
    assert set(metrics) >= {"top1", "top3", "macro_f1", "ece"} and metrics["top1"] >= 0.8
    knowledge_only = _json(runner.invoke(app, ["eval", "diagnosis", "--dataset", "ddxplus", "--path", str(world),
                                               "--knowledge", str(world.parent / "release_conditions.json"), "--json"]))
    assert knowledge_only["model"] == "knowledge-only"
    result = _json(runner.invoke(app, ["diagnose", "--findings", "E_6,E_7", "--absent", "E_0", "--model", str(out),
                                       "--json"]))
    assert result["diagnoses"][0]["label"] == "Gamma rash"
    shown = runner.invoke(app, ["diagnose", "--findings", "E_6,E_7", "--model", str(out)])
    assert shown.exit_code == 0 and "Gamma rash" in shown.output and "+ " in shown.output
    for arguments, message in ((["diagnose", "--findings", "E_6"], "no diagnosis model"),
                               (["diagnose", "--model", str(out)], "nothing to diagnose"),
                               (["diagnose", "--findings", "nope", "--model", str(out)], "unknown finding")):
        failed = runner.invoke(app, arguments)
        assert failed.exit_code != 0 and isinstance(failed.exception, KgmmError)
        assert message in str(failed.exception)


@pytest.mark.slow
@pytest.mark.shared_data
def test_shared_ddxplus_symptom2disease_fashion_and_medpix(shared_data, tmp_path):
    from kgmm.tasks.diagnosis import DiagnosisModel, evaluate_diagnosis, open_diagnosis_model, train_diagnosis

    ddx = shared_data / "ddxplus" / "patients_train.csv"
    summary = train_diagnosis(ddx, "ddxplus", tmp_path / "ddx", progress=False)
    metrics = evaluate_diagnosis(DiagnosisModel.load(tmp_path / "ddx"), summary["heldout_file"], "ddxplus")
    assert metrics["top1"] >= 0.97 and metrics["ece"] <= 0.05
    knowledge = open_diagnosis_model(None, ddx.parent / "release_conditions.json")
    assert evaluate_diagnosis(knowledge, summary["heldout_file"], "ddxplus")["top3"] >= 0.9
    s2d = shared_data / "symptom2disease" / "symptom2disease_train.csv"
    summary = train_diagnosis(s2d, "symptom2disease", tmp_path / "s2d", progress=False)
    metrics = evaluate_diagnosis(DiagnosisModel.load(tmp_path / "s2d"), summary["heldout_file"], "symptom2disease")
    assert metrics["top1"] >= 0.9
    products = shared_data / "fashion" / "products_train.csv"
    summary = train_diagnosis(products, "fashion", tmp_path / "fashion", progress=False)
    metrics = evaluate_diagnosis(DiagnosisModel.load(tmp_path / "fashion"), summary["heldout_file"], "fashion")
    assert metrics["top1"] >= 0.85
    medpix = shared_data / "medpix" / "data_test.jsonl"
    metrics = evaluate_diagnosis(open_diagnosis_model(None, medpix), medpix, "medpix")
    assert metrics["cases"] == 69 and metrics["top3"] >= 0.4


def write_fashion(folder: Path) -> Path:
    """Photos (coloured squares) and titles of four article types, plus a catalogue with other products."""
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    kinds = {"Tshirts": (200, 30, 30), "Jeans": (30, 30, 200), "Watches": (30, 160, 30), "Caps": (220, 200, 20)}
    brands = ["Acme", "Bolt", "Crest", "Dune", "Echo", "Fjord"]
    header = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName,image\n"
    rows, catalogue = [], []
    for k, (kind, rgb) in enumerate(kinds.items()):
        for i, brand in enumerate(brands):
            product = 100 * (k + 1) + i
            image = Image.new("RGB", (64, 64), (128, 128, 128))
            image.paste(tuple(max(0, c - 8 * i) for c in rgb), (8, 8, 56, 56))
            image.save(folder / "images" / f"{product}.png")
            usage = "Sports" if kind == "Caps" else "Casual"
            rows.append(f"{product},Men,Apparel,Topwear,{kind},Red,Summer,2012,{usage},{brand} Men {kind},"
                        f"images/{product}.png\n")
            catalogue.append(f"{product + 5000},Women,Apparel,Topwear,{kind},Blue,Fall,2011,{usage},"
                             f"{brand} Women Blue {kind}\n")
        catalogue.append(f"{100 * (k + 1)},Men,Apparel,Topwear,{kind},Red,Summer,2012,Casual,own product\n")
    (folder / "products_train.csv").write_text(header + "".join(rows), encoding="utf-8")
    (folder / "catalogue.csv").write_text(header.replace(",image", "") + "".join(catalogue), encoding="utf-8")
    return folder / "products_train.csv"


def test_fashion_products_from_photo_and_title_with_catalogue_rows(tmp_path, monkeypatch, retail_extractor):
    from kgmm.tasks import diagnosis
    from kgmm.tasks.diagnosis import DiagnosisModel, evaluate_diagnosis, train_diagnosis

    monkeypatch.setattr(diagnosis, "_extractor", lambda domain: retail_extractor)
    monkeypatch.setenv("KGMM_CACHE_DIR", str(tmp_path / "cache"))
    products = write_fashion(tmp_path / "fashion")
    cases = read_cases(products, "fashion")
    assert cases[0].label == "Tshirts" and cases[0].text == "Acme Men Tshirts" and Path(cases[0].image).is_file()
    assert read_cases(products, "fashion", target="usage")[-1].label == "Sports"
    summary = train_diagnosis(products, "fashion", tmp_path / "model", holdout=0.34, epochs=40, progress=False)
    # Every catalogue row but the one that is a product of the photo file (same id) joins training.
    assert summary["catalogue_cases"] == 24 and summary["modalities"] == ["findings", "image", "text"]
    heldout = Path(summary["heldout_file"])
    assert all(Path(case.image).is_absolute() and Path(case.image).is_file() for case in read_cases(heldout, "fashion"))
    model = DiagnosisModel.load(tmp_path / "model")
    assert model.config["modality_dropout"] > 0  # catalogue rows have no photo
    metrics = evaluate_diagnosis(model, heldout, "fashion")
    assert metrics["cases"] == 8 and metrics["top1"] >= 0.75
    photo_only = model.diagnose(Case("p", None, image=str(tmp_path / "fashion" / "images" / "402.png")), top_k=1)
    assert photo_only["diagnoses"][0]["label"] == "Caps"
    with pytest.raises(SourceError, match="notes.txt"):
        (tmp_path / "notes.txt").write_text("not an image", encoding="utf-8")
        model.diagnose(Case("p", None, image=str(tmp_path / "notes.txt")))
    with pytest.raises(SourceError, match="no 'style' column; --target is one of"):
        read_cases(products, "fashion", target="style")


def test_init_from_another_model_transfers_the_shared_layers(trained, world, tmp_path):
    from kgmm.tasks.diagnosis import DiagnosisModel, train_diagnosis

    source, _ = trained
    summary = train_diagnosis(world, "ddxplus", tmp_path / "adapted", init_from=source, per_class=5, epochs=5,
                              progress=False)
    assert summary["transferred_parameters"] > 0 and summary["init_from"] == str(source)
    adapted = DiagnosisModel.load(tmp_path / "adapted")
    assert adapted.config["labels"] == DiagnosisModel.load(source).config["labels"]
    other = tmp_path / "other.jsonl"
    other.write_text('{"label": "x", "findings": ["a"]}\n{"label": "y", "findings": ["b"]}\n', encoding="utf-8")
    with pytest.raises(ValidationError, match="no parameter of that model fits"):
        train_diagnosis(other, "jsonl", tmp_path / "m", holdout=0.0, init_from=source, hidden_channels=32,
                        progress=False)


def test_learning_curve_trains_every_variant_on_the_same_held_out_cases(trained, world, tmp_path):
    from kgmm.bench import parse_sizes
    from kgmm.bench.diagnosis import learning_curve

    source, _ = trained
    result = learning_curve(world, "ddxplus", tmp_path / "curve", sizes=parse_sizes("2,all"), adapt_from=source,
                            epochs=10)
    rows = result["rows"]
    assert len(rows) == 8 and result["heldout_cases"] == 48
    assert {(row["per_class"], row["start"], row["graph"]) for row in rows} == {
        (size, start, graph) for size in (2, "all") for start in ("scratch", "adapted") for graph in (True, False)}
    assert {row["train"] for row in rows if row["per_class"] == 2} == {8}
    assert all(0.0 <= row["top1"] <= row["top3"] <= 1.0 for row in rows)
    assert (tmp_path / "curve" / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "curve" / "learning_curve.json").read_text(encoding="utf-8"))
    assert saved["rows"] == rows
    with pytest.raises(ValidationError, match=r"not a number of cases per label \(at least 1\)"):
        parse_sizes("1,0")


def test_knowledge_only_from_the_hpo_disease_phenotype_graph():
    from kgmm.domains.knowledge import load_knowledge
    from kgmm.tasks.diagnosis import DiagnosisModel

    knowledge = load_knowledge("hpo")
    assert len(knowledge.edges) > 5000 and knowledge.finding_names["HP:0001250"] == "Seizure"
    relations = {relation for edges in knowledge.edges.values() for relation in edges.values()}
    assert relations == {"HAS_PHENOTYPE", "HAS_PHENOTYPE_BROADER"}
    # A disease's own specific phenotypes put it first among >5,000 (phenotypes most diseases share would not).
    specific = {}
    for label, edges in knowledge.edges.items():
        own = [f for f, r in edges.items() if r == "HAS_PHENOTYPE"]
        if len(own) >= 4:
            specific[label] = own
    counts = {}
    for own in specific.values():
        for finding in own:
            counts[finding] = counts.get(finding, 0) + 1
    label, own = next((label, own) for label, own in sorted(specific.items())
                      if sum(counts[f] == 1 for f in own) >= 2)
    unique = [f for f in own if counts[f] == 1][:2]
    model = DiagnosisModel.from_knowledge(knowledge)
    result = model.diagnose(Case("c", None, unique), top_k=3)
    assert result["diagnoses"][0]["label"] == label
    assert {item["finding"] for item in result["diagnoses"][0]["supports"]} == set(unique)


def test_medpix_cases_ranked_by_a_graph_read_from_disease_discussions(tmp_path, medical_extractor, monkeypatch):
    from kgmm.sources.cases import medpix_topics
    from kgmm.tasks import diagnosis
    from kgmm.tasks.diagnosis import evaluate_diagnosis, open_diagnosis_model

    monkeypatch.setattr(diagnosis, "_extractor", lambda domain: medical_extractor)
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "images" / "MPX2_synpic1.png")
    records = [
        {"U_id": "MPX1", "Case": {"Case Diagnosis": "Pneumonia", "History": "Fever and a productive cough.",
                                  "Findings": "Consolidation."},
         "Topic": {"Disease Discussion": "Pneumonia presents with fever, cough and dyspnea."}},
        {"U_id": "MPX2", "Case": {"Case Diagnosis": "Glioma", "History": "New seizures and headache.",
                                  "Findings": "A mass."},
         "Topic": {"Disease Discussion": "Gliomas cause headache, seizures and nausea."}},
    ]
    path = tmp_path / "data_test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (tmp_path / "descriptions_test.jsonl").write_text(json.dumps(
        {"U_id": "MPX2", "image": "MPX2_synpic1", "Description": {"Caption": "MRI shows a frontal mass."}}) + "\n",
        encoding="utf-8")
    cases = read_cases(path, "medpix")
    assert [case.label for case in cases] == ["Pneumonia", "Glioma"]
    assert cases[1].text.endswith("MRI shows a frontal mass.") and cases[1].image.endswith("MPX2_synpic1.png")
    assert cases[0].image is None and "Consolidation" in cases[0].text
    assert set(medpix_topics(path)) == {"Pneumonia", "Glioma"}
    model = open_diagnosis_model(None, path)
    assert model.knowledge.edges["Glioma"] and all(r == "DESCRIBED_WITH" for r in model.knowledge.edges["Glioma"].values())
    metrics = evaluate_diagnosis(model, path, "medpix")
    assert metrics["top1"] == 1.0 and metrics["cases"] == 2


def test_diagnose_from_a_store_ranks_its_conditions_with_the_sources_of_each_edge(tmp_path):
    from kgmm.app.diagnose import diagnose_case
    from kgmm.errors import DomainError
    from kgmm.schema import Entity, Relation
    from kgmm.store import open_store
    from kgmm.tasks.diagnosis import open_diagnosis_model, store_knowledge

    flu, cold = Entity("medical:disease:flu", "Flu", "Disease", "medical"), Entity("medical:disease:cold", "Cold",
                                                                                     "Disease", "medical")
    fever, sneeze = (Entity("medical:symptom:fever", "fever", "Symptom", "medical"),
                     Entity("medical:symptom:sneezing", "sneezing", "Symptom", "medical"))
    drug = Entity("medical:drug:x", "Drugzol", "Drug", "medical")
    with open_store(tmp_path / "store") as store:
        store.upsert_entities([flu, cold, fever, sneeze, drug])
        store.upsert_relations([Relation(flu.id, "HAS_SYMPTOM", fever.id, 0.8, "dep", ["doc:a"], ["Flu gives fever."]),
                                Relation(cold.id, "HAS_SYMPTOM", sneeze.id, 0.8, "dep", ["doc:b"], ["Colds: sneezing."]),
                                Relation(drug.id, "TREATS", flu.id, 0.8, "dep", ["doc:c"], ["Drugzol treats flu."])])
        from kgmm.schema import Mention, Source

        text = "Mumps: swelling of the jaw, with fever."
        about = Source.document(text, "mumps.txt", title="Mumps (viral)")
        mumps = Entity("medical:disease:mumps", "Mumps", "Disease", "medical")
        swelling = Entity("medical:symptom:swelling", "swelling", "Symptom", "medical")
        jaw = Entity("medical:anatomy:jaw", "jaw", "Anatomy", "medical")
        store.upsert_entities([mumps, swelling, jaw])
        store.upsert_mentions([Mention(mumps.id, about.id, 0, 5, "Mumps", text),
                               Mention(swelling.id, about.id, 7, 15, "swelling", text),
                               Mention(jaw.id, about.id, 23, 26, "jaw", text),
                               Mention(fever.id, about.id, 33, 38, "fever", text)])
        # A lexicon may file a condition under a finding type; a document titled by it still describes it, and
        # what the document negates is not one of its findings.
        aneurysm = Entity("medical:symptom:aortic-aneurysm", "Aortic aneurysm", "Symptom", "medical")
        pain = Entity("medical:symptom:back-pain", "back pain", "Symptom", "medical")
        text2 = "Aortic aneurysm: back pain, no fever."
        about2 = Source.document(text2, "aneurysm.txt", title="Abdominal aortic aneurysm")
        store.upsert_entities([aneurysm, pain])
        store.upsert_mentions([Mention(aneurysm.id, about2.id, 0, 15, "Aortic aneurysm", text2),
                               Mention(pain.id, about2.id, 17, 26, "back pain", text2),
                               Mention(fever.id, about2.id, 31, 36, "fever", text2, negated=True)])
        store.upsert_sources([about, about2])
        knowledge = store_knowledge(store)
        described = {entity.id: "DESCRIBED_WITH" for entity in (mumps, swelling, jaw, fever)}
        assert knowledge.edges == {"Flu": {fever.id: "HAS_SYMPTOM"}, "Cold": {sneeze.id: "HAS_SYMPTOM"},
                                   "Mumps": described,
                                   "Aortic aneurysm": {aneurysm.id: "DESCRIBED_WITH", pain.id: "DESCRIBED_WITH"}}
        assert knowledge.edge_sources["Mumps"][swelling.id] == [about.id]
        assert knowledge.edge_sources["Flu"] == {fever.id: ["doc:a"]} and knowledge.label_ids["Flu"] == flu.id
        model = open_diagnosis_model(None, store=store)
        with pytest.raises(DomainError, match="names no condition_types"):
            store_knowledge(store, domain="general")
    result = diagnose_case(model, findings=["fever"], absent=["sneezing"], top_k=4)
    first = result["diagnoses"][0]
    assert first["label"] == "Flu" and first["supports"][0]["sources"] == ["doc:a"]
    cold_entry = next(entry for entry in result["diagnoses"] if entry["label"] == "Cold")
    assert [item["finding"] for item in cold_entry["against"]] == [sneeze.id]


def test_the_store_bench_ingests_the_discussions_and_ranks_every_case_from_the_store(tmp_path, monkeypatch,
                                                                                    medical_extractor):
    from kgmm.bench.diagnosis import store_ranking
    from kgmm.tasks import diagnosis

    monkeypatch.setattr(diagnosis, "_extractor", lambda domain: medical_extractor)
    records = [
        {"U_id": "MPX1", "Case": {"Case Diagnosis": "Acute pneumonia", "History": "Fever and a productive cough.",
                                  "Findings": "Consolidation."},
         "Topic": {"Disease Discussion": "Pneumonia presents with fever, cough and dyspnea."}},
        {"U_id": "MPX2", "Case": {"Case Diagnosis": "Migraine", "History": "Headache with nausea.", "Findings": "-"},
         "Topic": {"Disease Discussion": "Migraine gives a throbbing headache, nausea and photophobia."}},
        {"U_id": "MPX3", "Case": {"Case Diagnosis": "Zzyzx syndrome", "History": "Headache.", "Findings": "-"},
         "Topic": {"Disease Discussion": "A syndrome nobody named in the lexicon."}},
    ]
    path = tmp_path / "data_test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = store_ranking(path, store=tmp_path / "store")
    assert (result["cases"], result["documents"]) == (3, 3)
    # pneumonia and migraine resolve to the store's conditions and rank first; the unnamed syndrome is a miss
    assert result["labels_resolved"] == 2 and result["top1"] == round(2 / 3, 4)
    assert (tmp_path / "store").exists()
