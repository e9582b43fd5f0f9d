"""The image-encoding benchmark: both passes counted, cached features equal computed ones."""

from __future__ import annotations

import pytest
from PIL import Image

from kgmm.bench.vision import image_files, vision_benchmark
from kgmm.errors import ValidationError


def test_vision_benchmark_reports_first_and_cached_rates(tmp_path):
    for i in range(5):
        Image.new("RGB", (64, 48), (40 * i, 20, 200 - 30 * i)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    result = vision_benchmark(tmp_path, limit=4, bf16=False)
    assert result["images"] == 4 and result["dim"] == 1280 and result["first_image_size"] == [64, 48]
    assert result["forward_passes"] >= 1 and result["cached_forward_passes"] == 0  # the second pass is the cache's
    assert result["images_per_s"] == pytest.approx(4 / result["encode_s"], rel=0.05)


def test_image_files_names_an_empty_or_missing_folder(tmp_path):
    with pytest.raises(ValidationError, match="no images"):
        image_files(tmp_path)
    with pytest.raises(ValidationError, match="no image folder"):
        image_files(tmp_path / "absent")
