"""Vision encoders: image reading errors, EfficientNet-Lite0 features, a local transformers model, the cache."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from kgmm.errors import SourceError
from kgmm.nn.vision import (
    EfficientNetLiteEncoder,
    TransformersVisionEncoder,
    center_crop_tensor,
    encode_image_files,
    imagenet_labels,
    load_image,
    vision_encoder,
)


def write_image(path, colour=(200, 30, 30), size=(320, 240), fmt="JPEG"):
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


@pytest.fixture(scope="module")
def effnet():
    return EfficientNetLiteEncoder(bf16=False)


def test_load_image_reports_missing_empty_non_image_and_truncated_files(tmp_path):
    with pytest.raises(SourceError, match="no such image file"):
        load_image(tmp_path / "absent.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(SourceError, match="empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("not an image at all")
    with pytest.raises(SourceError, match=r"notes\.jpg: not an image"):
        load_image(tmp_path / "notes.jpg")
    whole = io.BytesIO()
    Image.effect_noise((256, 256), 40).convert("RGB").save(whole, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 3])
    with pytest.raises(SourceError, match=r"cut\.jpg: the image cannot be decoded.*truncated"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(SourceError, match="empty"):
        load_image(b"")


def test_load_image_converts_to_rgb_and_center_crop_keeps_the_middle(tmp_path):
    image = Image.new("L", (400, 200), 0)
    image.paste(255, (150, 0, 250, 200))  # a white band in the middle
    path = tmp_path / "band.png"
    image.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == (400, 200)
    pixels = center_crop_tensor(loaded, size=100)
    assert pixels.shape == (3, 100, 100)
    assert pixels[:, :, 50].min() > 0.9 and pixels[:, :, 0].max() < 0.1  # band centred, sides cropped


def test_efficientnet_features_are_1280_d_deterministic_and_tell_images_apart(tmp_path, effnet):
    red = write_image(tmp_path / "red.jpg", (220, 20, 20))
    blue = write_image(tmp_path / "blue.jpg", (20, 20, 220))
    red_again = write_image(tmp_path / "red2.png", (220, 20, 20), size=(500, 500), fmt="PNG")
    features = effnet.encode([red, blue, red_again], batch_size=2)
    assert features.shape == (3, 1280) and torch.isfinite(features).all()
    assert torch.allclose(features, effnet.encode([red, blue, red_again]), atol=1e-5)
    cos = torch.nn.functional.cosine_similarity
    assert cos(features[0], features[2], dim=0) > cos(features[0], features[1], dim=0)


def test_efficientnet_classify_returns_imagenet_labels(tmp_path, effnet):
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[0] == "tench"
    top = effnet.classify([write_image(tmp_path / "x.jpg")], k=3)[0]
    assert len(top) == 3 and all(label in labels for label, _ in top)
    assert 1.0 >= top[0][1] >= top[1][1] >= top[2][1] > 0


def test_encode_image_files_caches_by_content(tmp_path, effnet):
    first = write_image(tmp_path / "a.jpg", (10, 200, 10))
    second = write_image(tmp_path / "b.jpg", (200, 200, 10))
    copy = tmp_path / "a-copy.jpg"
    copy.write_bytes(first.read_bytes())
    cache = tmp_path / "cache"
    features = encode_image_files([first, second, copy], effnet, cache_dir=cache)
    calls = effnet.calls
    assert torch.equal(features[0], features[2])  # same bytes, one computation
    again = encode_image_files([copy, second], effnet, cache_dir=cache)
    assert effnet.calls == calls and torch.equal(again, features[[2, 1]])
    write_image(second, (0, 0, 0))  # same name, new content: recomputed
    changed = encode_image_files([second], effnet, cache_dir=cache)
    assert effnet.calls == calls + 1 and not torch.equal(changed[0], features[1])
    uncached = encode_image_files([first], effnet, cache_dir=False)
    assert torch.allclose(uncached[0], features[0], atol=1e-5)


def test_encode_image_files_fails_on_a_bad_file_and_caches_nothing_from_it(tmp_path, effnet):
    good = write_image(tmp_path / "good.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_text("<html>oops</html>")
    with pytest.raises(SourceError, match=r"bad\.jpg"):
        encode_image_files([good, bad], effnet, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("index.json"))


def test_a_local_transformers_vision_model_works_by_path(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                       image_size=32, patch_size=8)
    torch.manual_seed(0)
    ViTModel(config).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    encoder = vision_encoder(tmp_path / "vit")
    assert isinstance(encoder, TransformersVisionEncoder) and encoder.dim == 32
    images = [write_image(tmp_path / "r.jpg", (250, 0, 0)), write_image(tmp_path / "g.jpg", (0, 250, 0))]
    features = encoder.encode(images)
    assert features.shape == (2, 32) and not torch.allclose(features[0], features[1])
    cached = encode_image_files(images, encoder, cache_dir=tmp_path / "cache")
    assert torch.allclose(cached, features, atol=1e-5)


def test_vision_encoder_rejects_a_folder_without_a_model(tmp_path):
    from kgmm.errors import ValidationError

    with pytest.raises(ValidationError, match="no transformers model"):
        vision_encoder(tmp_path)
