"""KGELinkPredictor: 1-vs-all scores equal PyG's one-at-a-time scores, reciprocal heads, N3, errors."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from kgmm.errors import ValidationError  # noqa: E402
from kgmm.nn.kge import KGE_MODELS, KGEConfig, KGELinkPredictor  # noqa: E402

NUM_NODES, NUM_RELATIONS = 4, 2
# A four-node graph: 0 -r0-> 1 -r0-> 2 -r1-> 3, 3 -r1-> 0
EDGE_INDEX = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
EDGE_TYPE = torch.tensor([0, 0, 1, 1])


def _model(name: str, **options) -> KGELinkPredictor:
    torch.manual_seed(0)
    model = KGELinkPredictor(KGEConfig(name, NUM_NODES, NUM_RELATIONS, 8, **options))
    model.set_graph(EDGE_INDEX, EDGE_TYPE)
    return model.eval()


def _one_at_a_time(model: KGELinkPredictor, head: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
    columns = [model(head, relation, torch.full_like(head, tail)) for tail in range(NUM_NODES)]
    return torch.stack(columns, dim=1)


@pytest.mark.parametrize("name", KGE_MODELS)
def test_kge_score_tails_equals_forward_for_every_tail(name):
    model = _model(name)
    head = torch.tensor([0, 1, 2, 3, 0])
    relation = torch.tensor([0, 1, 2, 3, 3])  # forward and inverse relations
    with torch.no_grad():
        scores = model.score_tails(head, relation)
        expected = _one_at_a_time(model, head, relation)
    assert scores.shape == (5, NUM_NODES)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", KGE_MODELS)
def test_kge_score_heads_uses_the_inverse_relation(name):
    model = _model(name)
    relation, tail = torch.tensor([0, 1]), torch.tensor([1, 3])
    with torch.no_grad():
        heads = model.score_heads(relation, tail)
        expected = model.score_tails(tail, relation + NUM_RELATIONS)
    torch.testing.assert_close(heads, expected)


def test_kge_wraps_pyg_models_and_their_forward():
    from torch_geometric.nn.kge import ComplEx

    model = _model("complex")
    assert isinstance(model.kge, ComplEx)
    assert model.kge.num_relations == 2 * NUM_RELATIONS  # each relation and its inverse
    head, relation, tail = torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([3, 1])
    torch.testing.assert_close(model(head, relation, tail), model.kge(head, relation, tail))
    assert "complex" in repr(model)


def test_kge_query_dropout_only_in_training():
    model = _model("distmult", dropout=0.5)
    head, relation = torch.tensor([0, 1]), torch.tensor([0, 1])
    with torch.no_grad():
        first, second = model.score_tails(head, relation), model.score_tails(head, relation)
    torch.testing.assert_close(first, second)
    model.train()
    with torch.no_grad():
        trained = [model.score_tails(head, relation) for _ in range(5)]
    assert any(not torch.equal(trained[0], other) for other in trained[1:])


@pytest.mark.parametrize("name", KGE_MODELS)
def test_kge_n3_penalty_is_positive_and_differentiable(name):
    model = _model(name).train()
    head, relation, tail = torch.tensor([0, 1]), torch.tensor([0, 3]), torch.tensor([1, 2])
    penalty = model.n3_penalty(head, relation, tail)
    assert penalty.dim() == 0 and penalty.item() > 0
    penalty.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_kge_n3_penalty_of_distmult_by_hand():
    model = _model("distmult")
    with torch.no_grad():
        model.kge.node_emb.weight.fill_(1.0)
        model.kge.rel_emb.weight.fill_(2.0)
    penalty = model.n3_penalty(torch.tensor([0]), torch.tensor([0]), torch.tensor([1]))
    assert penalty.item() == pytest.approx(8 * (1 + 1 + 8))  # 8 channels: |h|^3 + |t|^3 + |r|^3


def test_kge_rgcn_needs_a_graph():
    torch.manual_seed(0)
    model = KGELinkPredictor(KGEConfig("rgcn", NUM_NODES, NUM_RELATIONS, 8))
    with pytest.raises(ValidationError, match="set_graph"):
        model.score_tails(torch.tensor([0]), torch.tensor([0]))


def test_kge_set_graph_checks_shapes():
    model = _model("rgcn")
    with pytest.raises(ValidationError, match=r"expected edge_index of shape \[2, E\], got \[3, 4\]"):
        model.set_graph(torch.zeros(3, 4, dtype=torch.long), EDGE_TYPE)
    with pytest.raises(ValidationError, match=r"expected edge_type of shape \[4\]"):
        model.set_graph(EDGE_INDEX, torch.zeros(3, dtype=torch.long))


def test_kge_config_rejects_unknown_model_and_round_trips():
    with pytest.raises(ValidationError, match="no KGE model 'complx'; available: complex"):
        KGEConfig("complx", 4, 2, 8)
    with pytest.raises(ValidationError, match="num_nodes >= 1"):
        KGEConfig("complex", 0, 2, 8)
    config = KGEConfig("rotate", 4, 2, 8, margin=6.0)
    assert KGEConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValidationError, match="unknown KGE config keys"):
        KGEConfig.from_dict({**config.to_dict(), "colour": "red"})
