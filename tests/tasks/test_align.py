"""Alignment: the InfoNCE loss, retrieval ranks, the heads' zero-shot start, training on coloured squares."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


from kgmm.errors import SourceError, ValidationError  # noqa: E402
from kgmm.nn.align import AlignmentConfig, AlignmentModel, info_nce  # noqa: E402
from kgmm.tasks.align import (  # noqa: E402
    _FrozenEncoders,
    evaluate_align,
    load_align_model,
    retrieval_ranks,
)


# ---- the loss ---------------------------------------------------------------------------------
def test_info_nce_is_low_for_matched_pairs_and_high_for_shuffled_ones():
    embeddings = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    matched = info_nce(embeddings, embeddings, 0.05)
    shuffled = info_nce(embeddings, embeddings.roll(1, 0), 0.05)
    assert matched.loss < 0.05 < 5.0 < shuffled.loss
    assert torch.isclose(matched.loss, (matched.image_to_text + matched.text_to_image) / 2)


def test_info_nce_does_not_count_same_image_captions_as_negatives():
    images = torch.eye(2)
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # two captions of image 0
    positives = torch.tensor([[True, True, False], [False, False, True]])
    with_groups = info_nce(images, texts, 0.1, positives)
    assert with_groups.text_to_image < 1e-3
    assert with_groups.image_to_text < 1e-3  # both captions positive: -log(2e^10 / (2e^10 + 1))
    with pytest.raises(ValidationError, match=r"expected positives of shape \[2, 3\], got \[3, 3\]"):
        info_nce(images, texts, 0.1, torch.eye(3, dtype=torch.bool))


# ---- ranks ------------------------------------------------------------------------------------
def test_retrieval_ranks_of_an_identity_setup_are_all_one_and_ties_count_against():
    images = torch.eye(4)
    texts = torch.eye(4).repeat_interleave(2, 0)  # two captions per image
    ranks = retrieval_ranks(images, texts, torch.arange(4).repeat_interleave(2))
    metrics = ranks.metrics()
    assert metrics["image_to_text"]["R@1"] == 1.0 and metrics["text_to_image"]["R@1"] == 1.0
    assert metrics["image_to_text"]["median_rank"] == 1.0 and ranks.pool_size == 4
    tied = retrieval_ranks(torch.ones(3, 2), torch.ones(3, 2), torch.arange(3))
    assert tied.image_to_text.tolist() == [3, 3, 3] and tied.text_to_image.tolist() == [3, 3, 3]


def test_retrieval_ranks_candidate_pools_are_deterministic_and_capped():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(30, 8, generator=generator)
    texts = torch.randn(30, 8, generator=generator)
    first = retrieval_ranks(images, texts, torch.arange(30), candidates=10, seed=5)
    again = retrieval_ranks(images, texts, torch.arange(30), candidates=10, seed=5)
    assert first.pool_size == 10 and torch.equal(first.image_to_text, again.image_to_text)
    assert int(first.image_to_text.max()) <= 10 and int(first.text_to_image.max()) <= 10
    assert retrieval_ranks(images, texts, torch.arange(30), candidates=100).pool_size == 30


# ---- the model --------------------------------------------------------------------------------
def test_alignment_model_starts_as_the_text_encoder_and_the_image_prior():
    config = AlignmentConfig(image_channels=12, text_channels=4, out_channels=4, image_skip_from=8, graph_channels=3)
    model = AlignmentModel(config).eval()
    text = torch.randn(5, 4)
    image = torch.randn(5, 12)
    assert torch.allclose(model.embed_text(text), torch.nn.functional.normalize(text, dim=-1), atol=1e-6)
    assert torch.allclose(model.embed_image(image), torch.nn.functional.normalize(image[:, 8:], dim=-1), atol=1e-6)
    assert torch.allclose(model.embed_entity(text, torch.randn(5, 3)), model.embed_text(text), atol=1e-6)
    out = model(image, text)
    assert out.image.shape == (5, 4) and abs(out.temperature.item() - 0.05) < 1e-6
    with pytest.raises(ValidationError, match="image_skip_from=10 needs image features of at least 14"):
        AlignmentConfig(image_channels=12, text_channels=4, out_channels=4, image_skip_from=10)


def test_label_prior_weights_label_embeddings_by_classifier_probability():
    encoders = _FrozenEncoders()
    encoders._classifier = (torch.tensor([[10.0, 0.0], [0.0, 10.0], [0.0, 0.0]]), torch.zeros(3))
    encoders._label_embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    prior = encoders.label_prior(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), top_k=1)
    assert torch.allclose(prior, torch.eye(2))


# ---- training on coloured squares (fixtures `encoders`, `squares`, `trained` in tests/conftest.py) ----------
def test_train_align_writes_the_model_and_learns_better_than_chance(trained, squares, encoders):
    out, result, cache = trained
    vision, text = encoders
    assert {"config.json", "weights.safetensors", "metrics.json"} <= {p.name for p in out.iterdir()}
    assert result["train_images"] + result["holdout_images"] == 16 and set(result["entity_columns"]) == {"colour"}
    on_train = evaluate_align(out, squares, split="train", label="colour", vision_model=vision, text_model=text,
                              cache_dir=cache)
    chance_at_1 = 1 / on_train["pool_size"]
    assert on_train["image_to_text"]["R@1"] >= 0.8 > 3 * chance_at_1
    assert on_train["label"]["top1"] >= 0.8 and on_train["label"]["classes"] == 8
    held = evaluate_align(out, squares, split="holdout", label="colour", vision_model=vision, text_model=text,
                          cache_dir=cache)
    assert held["images"] == result["holdout_images"]
    assert held["label"]["top1"] >= 0.4  # unseen photos named by colour (chance 1/8; red is held out whole)


def test_load_align_model_embeds_images_texts_and_entities_in_one_space(trained, squares, encoders):
    out, _, cache = trained
    vision, text = encoders
    model = load_align_model(out, vision_model=vision, text_model=text, cache_dir=cache)
    # green and blue are trained on with seed 0 (red is held out whole)
    images = model.embed_image_files([squares.parent / "images" / "green-large.png", squares.parent / "images" / "blue-large.png"])
    texts = model.embed_texts(["a large green square", "a large blue square"])
    entities = model.embed_entities(["green", "blue"], ["colour", "colour"])
    assert images.shape == texts.shape == entities.shape == (2, model.dim)
    assert torch.allclose(images.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert (images @ texts.t()).argmax(1).tolist() == [0, 1]
    assert (images @ entities.t()).argmax(1).tolist() == [0, 1]
    assert model.fingerprint == load_align_model(out, vision_model=vision, text_model=text).fingerprint


def test_load_align_model_and_evaluate_report_bad_input(tmp_path, squares):
    with pytest.raises(SourceError, match="not an alignment model directory"):
        load_align_model(tmp_path)
    (tmp_path / "config.json").write_text('{"kind": "kgmm-kge-model"}')
    with pytest.raises(SourceError, match="holds a 'kgmm-kge-model' model, not an alignment model"):
        load_align_model(tmp_path)
    with pytest.raises(ValidationError, match="give a model directory"):
        evaluate_align(None, squares)
    with pytest.raises(ValidationError, match="no baseline 'clip'; available: imagenet-labels"):
        evaluate_align(None, squares, baseline="clip")

