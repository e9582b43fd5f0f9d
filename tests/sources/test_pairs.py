"""Image–text pairs: each layout, relative paths, errors naming file and line, the split by image."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from kgmm.errors import SourceError, ValidationError
from kgmm.sources.pairs import ImageTextPair, read_pairs, split_pairs


def _image(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)
    return path


def _jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_read_pairs_jsonl_resolves_images_against_the_file_and_keeps_extra_keys_as_labels(tmp_path):
    _image(tmp_path / "data" / "img" / "a.png")
    path = _jsonl(tmp_path / "data" / "pairs.jsonl", [{"image": "img/a.png", "text": " a red square ", "colour": "red",
                                                       "size": 3, "tags": ["x"]}])
    [pair] = read_pairs(path)
    assert pair.image == tmp_path / "data" / "img" / "a.png"
    assert (pair.text, pair.group, pair.line) == ("a red square", "img/a.png", 1)
    assert pair.labels == {"colour": "red", "size": "3"}  # lists are not labels


def test_read_pairs_csv_takes_product_names_as_text_and_other_columns_as_labels(tmp_path):
    _image(tmp_path / "images" / "7.jpg")
    path = tmp_path / "products.csv"
    path.write_text("id,articleType,productDisplayName,image\n7,Shirts,Nike Men Blue Shirt,images/7.jpg\n", encoding="utf-8")
    [pair] = read_pairs(path)
    assert pair.text == "Nike Men Blue Shirt"
    assert pair.labels == {"id": "7", "articleType": "Shirts"}
    assert pair.line == 2


def test_read_pairs_json_list_gives_one_pair_per_caption_in_one_group(tmp_path):
    _image(tmp_path / "images" / "dog.jpg")
    path = tmp_path / "captions.json"
    path.write_text(json.dumps([{"image": "images/dog.jpg", "captions": ["A dog runs .", "", "A brown dog"]}]))
    pairs = read_pairs(path)
    assert [p.text for p in pairs] == ["A dog runs .", "A brown dog"]
    assert {p.group for p in pairs} == {"images/dog.jpg"}


def test_read_pairs_medpix_layout_finds_the_png_and_keeps_modality_plane_location(tmp_path):
    _image(tmp_path / "images" / "MPX1_synpic2.png")
    path = _jsonl(tmp_path / "descriptions.jsonl", [{
        "U_id": "MPX1", "image": "MPX1_synpic2", "Location": "Chest, Pulmonary",
        "Description": {"Caption": "CT shows consolidation.", "Modality": "CT - noncontrast", "Plane": "Axial"}}])
    [pair] = read_pairs(path)
    assert pair.image == tmp_path / "images" / "MPX1_synpic2.png"
    assert pair.text == "CT shows consolidation."
    assert pair.labels == {"modality": "CT - noncontrast", "plane": "Axial", "location": "Chest, Pulmonary"}


def test_read_pairs_errors_name_the_file_the_line_and_the_fix(tmp_path):
    with pytest.raises(SourceError, match=r"absent\.jsonl: no such pairs file"):
        read_pairs(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SourceError, match=r"empty\.jsonl: the pairs file is empty"):
        read_pairs(tmp_path / "empty.jsonl")
    _image(tmp_path / "a.png")
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png", "text": "ok"}\n{"image": "a.png", "text": \n')
    with pytest.raises(SourceError, match=r"bad\.jsonl:2: invalid JSON"):
        read_pairs(tmp_path / "bad.jsonl")
    _jsonl(tmp_path / "noimage.jsonl", [{"text": "a caption", "colour": "red"}])
    with pytest.raises(SourceError, match=r"noimage\.jsonl:1: no image column; expected one of image"):
        read_pairs(tmp_path / "noimage.jsonl")
    (tmp_path / "missing.csv").write_text("image,text\na.png,fine\nb.png,gone\n")
    with pytest.raises(SourceError, match=r"missing\.csv:3: no image file .*b\.png; image paths resolve against"):
        read_pairs(tmp_path / "missing.csv")
    (tmp_path / "pairs.txt").write_text("a.png\tcaption\n")
    with pytest.raises(SourceError, match="unknown pairs format '.txt'"):
        read_pairs(tmp_path / "pairs.txt")


def _pairs(groups: int, per_group: int = 2) -> list[ImageTextPair]:
    from pathlib import Path

    return [ImageTextPair(Path(f"{g}.png"), f"caption {g}.{c}", f"images/{g}.png") for g in range(groups)
            for c in range(per_group)]


def test_split_pairs_is_by_group_stable_under_shuffling_and_changes_with_the_seed():
    pairs = _pairs(200)
    split = split_pairs(pairs, holdout=0.2, seed=0)
    held = {p.group for p in split.holdout}
    assert not held & {p.group for p in split.train}
    assert 25 <= len(held) <= 55  # about 40 of 200
    shuffled = pairs[:]
    random.Random(3).shuffle(shuffled)
    assert {p.group for p in split_pairs(shuffled, holdout=0.2, seed=0).holdout} == held
    assert {p.group for p in split_pairs(pairs, holdout=0.2, seed=1).holdout} != held
    assert split_pairs(pairs, holdout=0.0).holdout == []


def test_split_pairs_keeps_both_sides_non_empty_and_checks_the_share():
    tiny = _pairs(2)
    split = split_pairs(tiny, holdout=0.01)
    assert len({p.group for p in split.holdout}) == 1 and len({p.group for p in split.train}) == 1
    with pytest.raises(ValidationError, match=r"holdout must be in \[0, 1\), got 1.5"):
        split_pairs(tiny, holdout=1.5)
