"""`kgmm train align` and `kgmm eval align`: JSON on the last line, the baseline, clear errors."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from kgmm.cli import app  # noqa: E402

runner = CliRunner()
COLOURS = {"red": (220, 20, 20), "green": (20, 180, 40), "blue": (30, 40, 220), "yellow": (240, 220, 20),
           "black": (10, 10, 10), "white": (245, 245, 245)}


@pytest.fixture
def pairs_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("KGMM_CACHE_DIR", str(tmp_path / "cache"))
    rows = ["image,text,colour"]
    for name, rgb in COLOURS.items():
        for shade in (0, 30):
            file_name = f"{name}{shade}.png"
            image = Image.new("RGB", (64, 64), (128, 128, 128))
            image.paste(tuple(max(0, c - shade) for c in rgb), (8, 8, 56, 56))
            image.save(tmp_path / file_name)
            rows.append(f"{file_name},a {name} square,{name}")
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_cli_train_and_eval_align_print_json_with_recalls(pairs_csv, tmp_path):
    out = tmp_path / "model"
    trained = runner.invoke(app, ["train", "align", "--pairs", str(pairs_csv), "--out", str(out), "--epochs", "30",
                                  "--holdout", "0.25", "--seed", "0", "--json"])
    assert trained.exit_code == 0, trained.output
    result = json.loads(trained.output.strip().splitlines()[-1])
    assert result["train_images"] + result["holdout_images"] == 12 and (out / "weights.safetensors").is_file()
    evaluated = runner.invoke(app, ["eval", "align", "--model", str(out), "--pairs", str(pairs_csv), "--split", "train",
                                    "--label", "colour", "--candidates", "5", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.output.strip().splitlines()[-1])
    assert metrics["pool_size"] == 5 and metrics["split"] == "train"
    assert metrics["image_to_text"]["R@5"] == 1.0 and metrics["image_to_text"]["R@1"] >= 0.5
    assert metrics["label"]["top1"] >= 0.5 and metrics["label"]["classes"] == 6
    baseline = runner.invoke(app, ["eval", "align", "--model", str(out), "--pairs", str(pairs_csv),
                                   "--baseline", "imagenet-labels", "--json"])
    assert baseline.exit_code == 0, baseline.output
    scored = json.loads(baseline.output.strip().splitlines()[-1])
    assert scored["model"] == "baseline:imagenet-labels" and scored["images"] == result["holdout_images"]


def test_cli_eval_align_names_bad_choices(pairs_csv):
    from kgmm.errors import ValidationError

    outcome = runner.invoke(app, ["eval", "align", "--pairs", str(pairs_csv), "--baseline", "clip"])
    assert isinstance(outcome.exception, ValidationError)
    assert "no baseline 'clip'; available: imagenet-labels" in str(outcome.exception)
    outcome = runner.invoke(app, ["eval", "align", "--pairs", str(pairs_csv), "--split", "test"])
    assert "no split 'test'; available: holdout, train, all" in str(outcome.exception)
