"""Fusion strategies: the registry, one forward contract, missing modalities, gradients, learning an interaction."""

from __future__ import annotations

import pytest
import torch

from kgmm.errors import ValidationError
from kgmm.nn.fusion import FUSION_STRATEGIES, Fusion, FusionOutput, build_fusion, register_fusion

DIMS = {"text": 6, "image": 5, "graph": 4}
STRATEGIES = sorted(FUSION_STRATEGIES)


def inputs(batch: int = 3, seed: int = 0) -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(seed)
    features = {
        "text": torch.randn(batch, 7, 6, generator=generator),  # tokens
        "image": torch.randn(batch, 5, generator=generator),  # pooled
        "graph": torch.randn(batch, 4, 4, generator=generator),
    }
    masks = {"text": torch.tensor([[True] * 7, [True] * 3 + [False] * 4, [True] * 5 + [False] * 2])[:batch],
             "graph": torch.ones(batch, 4, dtype=torch.bool)}
    return features, masks


def model(strategy: str, **options) -> Fusion:
    torch.manual_seed(0)
    return build_fusion(strategy, DIMS, 3, hidden_channels=16, **options).eval()


def test_registry_holds_the_five_strategies():
    assert set(FUSION_STRATEGIES) == {"early-concat", "early-gated", "late", "hybrid", "cross-attention"}


def test_build_fusion_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValidationError, match=r"no fusion strategy 'erly'; available: .*early-concat.*cross-attention"):
        build_fusion("erly", DIMS, 3)


def test_register_fusion_refuses_a_taken_name():
    with pytest.raises(ValidationError, match="already registered"):
        register_fusion("late")(Fusion)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fusion_output_shapes_and_repr(strategy):
    fusion = model(strategy)
    features, masks = inputs()
    output = fusion(features, masks)
    assert isinstance(output, FusionOutput)
    assert output.logits.shape == (3, 3)
    assert output.embedding.shape == (3, 16)
    if output.modality_weights is not None:
        assert output.modality_weights.shape == (3, 3)
        assert torch.all(output.modality_weights >= 0)
    assert torch.isfinite(output.logits).all()
    assert type(fusion).__name__ in repr(fusion) and "text=6" in repr(fusion)
    fusion.reset_parameters()
    assert fusion(features, masks).logits.shape == (3, 3)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fusion_all_present_mask_changes_nothing(strategy):
    fusion = model(strategy)
    features, masks = inputs()
    plain = fusion(features, masks)
    everything = fusion(features, masks, present=torch.ones(3, 3, dtype=torch.bool))
    torch.testing.assert_close(plain.logits, everything.logits)
    torch.testing.assert_close(plain.embedding, everything.embedding)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fusion_absent_modality_features_never_reach_the_output(strategy):
    fusion = model(strategy)
    features, masks = inputs()
    present = {"image": torch.tensor([True, False, True])}
    before = fusion(features, masks, present=present)
    changed = dict(features, image=features["image"].clone())
    changed["image"][1] += 100.0
    after = fusion(changed, masks, present=present)
    torch.testing.assert_close(before.logits, after.logits)
    assert not torch.allclose(before.logits[1], fusion(features, masks).logits[1])  # absence does matter
    if before.modality_weights is not None:
        assert before.modality_weights[1, 1] == 0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fusion_omitted_modality_equals_masked_out_modality(strategy):
    fusion = model(strategy)
    features, masks = inputs()
    without = {name: value for name, value in features.items() if name != "graph"}
    omitted = fusion(without, masks)
    masked = fusion(features, masks, present={"graph": torch.zeros(3, dtype=torch.bool)})
    torch.testing.assert_close(omitted.logits, masked.logits)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fusion_example_without_any_modality_stays_finite(strategy):
    fusion = model(strategy)
    features, masks = inputs()
    output = fusion(features, masks, present=torch.tensor([[False] * 3, [True] * 3, [True] * 3]))
    assert torch.isfinite(output.logits).all() and torch.isfinite(output.embedding).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fusion_gradients_reach_every_parameter(strategy):
    fusion = model(strategy)
    fusion.train()
    features, masks = inputs()
    output = fusion(features, masks)
    torch.nn.functional.cross_entropy(output.logits, torch.tensor([0, 1, 2])).backward()
    missing = [name for name, parameter in fusion.named_parameters() if parameter.grad is None]
    assert not missing
    assert all(torch.isfinite(parameter.grad).all() for parameter in fusion.parameters())
    for name in DIMS:
        first = next(fusion.projections[name].parameters())
        assert first.grad.abs().sum() > 0, name


def test_fusion_modality_dropout_keeps_one_modality_per_example():
    fusion = build_fusion("early-gated", DIMS, 3, hidden_channels=8, modality_dropout=0.95).train()
    features, _ = inputs(batch=3)
    torch.manual_seed(0)
    for _ in range(20):
        weights = fusion(features).modality_weights
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(3))
        assert ((weights > 0).sum(dim=1) >= 1).all()


def test_fusion_rejects_mismatched_shapes_and_unknown_modalities():
    fusion = model("early-concat")
    features, masks = inputs()
    with pytest.raises(ValidationError, match=r"expected 'image' features of shape \[3, 5\] or \[3, T, 5\], got \[3, 4\]"):
        fusion(dict(features, image=torch.randn(3, 4)), masks)
    with pytest.raises(ValidationError, match="unknown modalities"):
        fusion(dict(features, audio=torch.randn(3, 2)))
    with pytest.raises(ValidationError, match=r"expected the 'text' mask of shape \[3, 7\]"):
        fusion(features, dict(masks, text=torch.ones(3, 6, dtype=torch.bool)))


def interaction_task(count: int, seed: int) -> tuple[dict, torch.Tensor]:
    """Four classes: modality ``a`` tells {0,1} from {2,3}, ``b`` tells {0,2} from {1,3}; only both tell the class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (count,), generator=generator)
    a_bit, b_bit = (labels // 2).float(), (labels % 2).float()
    a = torch.randn(count, 4, generator=generator) * 0.3
    b = torch.randn(count, 2, 4, generator=generator) * 0.3  # b as two tokens, the signal in the second
    a[:, 0] += 2 * a_bit - 1
    b[:, 1, 2] += 2 * b_bit - 1
    return {"a": a, "b": b}, labels


def train_accuracy(strategy: str, modalities: list[str]) -> float:
    features, labels = interaction_task(256, seed=1)
    test_features, test_labels = interaction_task(256, seed=2)
    dims = {"a": 4, "b": 4}
    torch.manual_seed(0)
    fusion = build_fusion(strategy, {m: dims[m] for m in modalities}, 4, hidden_channels=16, dropout=0.0)
    optimiser = torch.optim.Adam(fusion.parameters(), lr=0.02)
    fusion.train()
    for _ in range(80):
        optimiser.zero_grad()
        output = fusion({m: features[m] for m in modalities})
        torch.nn.functional.cross_entropy(output.logits, labels).backward()
        optimiser.step()
    fusion.eval()
    with torch.no_grad():
        predicted = fusion({m: test_features[m] for m in modalities}).logits.argmax(-1)
    return float((predicted == test_labels).float().mean())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_fusion_learns_what_only_both_modalities_tell(strategy):
    assert train_accuracy(strategy, ["a", "b"]) > 0.95
    assert train_accuracy(strategy, ["a"]) < 0.65
    assert train_accuracy(strategy, ["b"]) < 0.65
