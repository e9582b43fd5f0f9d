"""The relational encoders on a four-node graph built by hand: shapes, gradients, inverse edges, seeds."""

from __future__ import annotations

import pytest
import torch

from kgmm.errors import ValidationError
from kgmm.nn.rgcn import RelationalAttentionEncoder, RGCNEncoder, add_inverse_edges

ENCODERS = [RGCNEncoder, RelationalAttentionEncoder]

# 0 -treats-> 1, 0 -causes-> 2, 3 -treats-> 2; node 3 receives nothing forward.
EDGE_INDEX = torch.tensor([[0, 0, 3], [1, 2, 2]])
EDGE_TYPE = torch.tensor([0, 1, 0])


def test_add_inverse_edges_appends_reversed_edges_with_shifted_types():
    edge_index, edge_type = add_inverse_edges(EDGE_INDEX, EDGE_TYPE, num_relations=2)
    assert edge_index.tolist() == [[0, 0, 3, 1, 2, 2], [1, 2, 2, 0, 0, 3]]
    assert edge_type.tolist() == [0, 1, 0, 2, 3, 2]


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_encoder_learned_table_shape_and_gradients(encoder_class):
    torch.manual_seed(0)
    encoder = encoder_class(4, 2, 8, num_bases=2)
    out = encoder(EDGE_INDEX, EDGE_TYPE)
    assert out.shape == (4, 8)
    out.pow(2).sum().backward()
    assert encoder.node_embedding.weight.grad is not None
    assert encoder.node_embedding.weight.grad.abs().sum() > 0
    assert [name for name, p in encoder.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_encoder_projects_input_features(encoder_class):
    torch.manual_seed(0)
    encoder = encoder_class(4, 2, 8, in_channels=5, num_layers=3)
    x = torch.randn(4, 5, requires_grad=True)
    out = encoder(EDGE_INDEX, EDGE_TYPE, x)
    assert out.shape == (4, 8)
    out.sum().backward()
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValidationError, match="in_channels=5"):
        encoder(EDGE_INDEX, EDGE_TYPE)


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_encoder_messages_flow_against_edge_direction(encoder_class):
    # Node 3 has only an outgoing edge: its output depends on node 2 through the inverse edge.
    torch.manual_seed(0)
    encoder = encoder_class(4, 2, 8, num_layers=1).eval()
    x = torch.randn(4, 8, requires_grad=True)
    out = encoder(EDGE_INDEX, EDGE_TYPE, x)
    out[3].sum().backward()
    assert x.grad[2].abs().sum() > 0
    assert x.grad[1].abs().sum() == 0  # not a neighbour of 3 in one hop


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_encoder_same_seed_same_output(encoder_class):
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        encoder = encoder_class(4, 2, 8, num_bases=2, dropout=0.5).eval()
        outputs.append(encoder(EDGE_INDEX, EDGE_TYPE))
    assert torch.equal(outputs[0], outputs[1])
    torch.manual_seed(8)
    assert not torch.equal(outputs[0], encoder_class(4, 2, 8, num_bases=2).eval()(EDGE_INDEX, EDGE_TYPE))


@pytest.mark.parametrize("encoder_class", ENCODERS)
def test_encoder_rejects_bad_inputs_naming_them(encoder_class):
    encoder = encoder_class(4, 2, 8)
    with pytest.raises(ValidationError, match=r"edge_index of shape \[2, E\], got \[3, 3\]"):
        encoder(torch.zeros(3, 3, dtype=torch.long), EDGE_TYPE)
    with pytest.raises(ValidationError, match="edge_type values must be in 0..1"):
        encoder(EDGE_INDEX, torch.tensor([0, 2, 0]))
    with pytest.raises(ValidationError, match="edge_index values must be in 0..3"):
        encoder(torch.tensor([[0, 0, 4], [1, 2, 2]]), EDGE_TYPE)
    with pytest.raises(ValidationError, match=r"expected x of shape \[4, 8\]"):
        encoder(EDGE_INDEX, EDGE_TYPE, torch.zeros(4, 3))


def test_attention_encoder_heads_must_divide_hidden():
    with pytest.raises(ValidationError, match="heads"):
        RelationalAttentionEncoder(4, 2, 8, heads=3)
    assert RelationalAttentionEncoder(4, 2, 8, heads=2)(EDGE_INDEX, EDGE_TYPE).shape == (4, 8)


def test_attention_conv_single_incoming_edge_gets_the_whole_weight():
    from kgmm.nn.rgcn import RelationalAttentionConv

    torch.manual_seed(0)
    conv = RelationalAttentionConv(3, 4, num_relations=2, heads=2, num_bases=2)
    x = torch.randn(3, 3)
    out = conv(x, torch.tensor([[0, 1, 2], [1, 2, 1]]), torch.tensor([1, 0, 0]))
    weights = conv.relation_weights()
    # node 2 has one incoming edge (1 -0-> 2): attention 1 on it
    assert torch.allclose(out[2], x[1] @ weights[0] + conv.root(x)[2] + conv.bias, atol=1e-6)
    # node 0 has none: only its own state
    assert torch.allclose(out[0], conv.root(x)[0] + conv.bias, atol=1e-6)
    # node 1 averages its two messages with attention weights that sum to one, per head
    messages = torch.stack([x[0] @ weights[1], x[2] @ weights[0]])
    mixed = out[1] - conv.root(x)[1] - conv.bias
    for head in range(2):
        part = slice(2 * head, 2 * head + 2)
        solution = torch.linalg.lstsq(messages[:, part].t(), mixed[part].unsqueeze(1)).solution.view(-1)
        assert solution.sum().item() == pytest.approx(1.0, abs=1e-4) and bool((solution > 0).all())


@pytest.mark.parametrize("num_bases", [None, 2])
def test_relational_graph_conv_matches_pyg_rgcnconv(num_bases):
    from torch_geometric.nn import RGCNConv

    from kgmm.nn.rgcn import RelationalGraphConv

    torch.manual_seed(0)
    reference = RGCNConv(5, 6, 3, num_bases=num_bases, aggr="mean")
    conv = RelationalGraphConv(5, 6, 3, num_bases=num_bases)
    conv.load_state_dict(reference.state_dict())
    with torch.no_grad():
        conv.bias.normal_()
        reference.bias.copy_(conv.bias)
    x = torch.randn(6, 5)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 0], [1, 1, 1, 4, 4, 0, 5, 5]])
    edge_type = torch.tensor([0, 0, 1, 2, 2, 1, 0, 0])
    assert torch.allclose(conv(x, edge_index, edge_type), reference(x, edge_index, edge_type), atol=1e-5)
