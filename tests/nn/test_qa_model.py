"""Question-conditioned propagation: the sparse step against a plain loop, pruning, paths, gradients."""

from __future__ import annotations

import pytest
import torch

from kgmm.errors import ValidationError
from kgmm.nn.qa import GraphQA, RelationGraph, trace_path

# 0 -r0-> 1 -r1-> 2 ; 3 -r0-> 1 ; 2 -r1-> 4
EDGES = torch.tensor([[0, 1, 3, 2], [1, 2, 1, 4]])
TYPES = torch.tensor([0, 1, 0, 1])


def loop_step(scores: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(scores)
    for (head, tail), relation in zip(EDGES.t().tolist(), TYPES.tolist(), strict=True):
        out[tail] += scores[head] * weights[:, relation]
        out[head] += scores[tail] * weights[:, relation + 2]
    return out.clamp(max=1.0)


def test_step_matches_a_plain_loop_in_both_directions_with_and_without_gradients():
    graph = RelationGraph(EDGES, TYPES, 5, 2)
    scores = torch.rand(5, 3)
    weights = torch.rand(3, 4).softmax(-1)
    expected = loop_step(scores, weights)
    torch.testing.assert_close(graph.step(scores, weights), expected)
    with torch.no_grad():
        torch.testing.assert_close(graph.step(scores, weights), expected)


def test_relations_the_model_never_saw_are_left_out():
    graph = RelationGraph(EDGES, torch.tensor([0, 1, 5, 1]), 5, 2)  # type 5 unknown to a 2-relation model
    assert graph.num_edges == 3
    seeds = torch.zeros(5, 1)
    seeds[3] = 1.0
    assert graph.step(seeds, torch.ones(1, 4)).sum() == 0


def test_relation_profile_counts_the_edges_leaving_the_seeds_by_relation_and_direction():
    graph = RelationGraph(EDGES, TYPES, 5, 2)
    seeds = torch.zeros(5, 2)
    seeds[1, 0] = 1.0  # node 1: r1 forward to 2, r0 backwards to 0 and 3
    seeds[4, 1] = 1.0  # node 4: r1 backwards to 2
    profile = graph.relation_profile(seeds)
    torch.testing.assert_close(profile, torch.log1p(torch.tensor([[0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]])))


def test_reachable_walks_any_relation_either_way():
    graph = RelationGraph(EDGES, TYPES, 5, 2)
    seeds = torch.zeros(5, 1)
    seeds[0] = 1.0
    assert graph.reachable(seeds, 1)[:, 0].tolist() == [False, True, False, False, False]
    assert graph.reachable(seeds, 3)[:, 0].tolist() == [True, True, True, True, True]


def test_trace_path_reads_the_chain_back_and_gradients_reach_every_relation():
    torch.manual_seed(0)
    graph = RelationGraph(EDGES, TYPES, 5, 2)
    model = GraphQA(2, 8, steps=2, fusion="early-concat", hidden_channels=16)
    seeds = torch.zeros(5, 1)
    seeds[0] = 1.0
    question = torch.randn(1, 3, 8)
    reasoning = model(graph, seeds, {"question": question})
    assert reasoning.scores[0, 0] == 0  # a seed is never its own answer
    path = trace_path(graph, reasoning, 0, 2)
    assert path == [(0, 0, 1), (1, 1, 2)]  # 0 -r0-> 1 -r1-> 2
    assert trace_path(graph, reasoning, 0, 0) == []
    reasoning.scores[2, 0].backward()
    output_layer = [p for p in model.parameters() if p.grad is not None]
    assert output_layer and all(torch.isfinite(p.grad).all() for p in output_layer)


def test_a_graph_built_for_another_relation_count_is_refused():
    model = GraphQA(3, 8, steps=1, fusion="early-concat", hidden_channels=16)
    with pytest.raises(ValidationError, match="relation types"):
        model(RelationGraph(EDGES, TYPES, 5, 2), torch.zeros(5, 1), {"question": torch.randn(1, 8)})


@pytest.mark.parametrize("fusion", ["early-concat", "early-gated", "late", "hybrid", "cross-attention"])
def test_every_fusion_strategy_can_read_the_question(fusion):
    model = GraphQA(2, 8, steps=2, fusion=fusion, hidden_channels=16)
    relations, hops = model.instructions({"question": torch.randn(4, 5, 8), "graph": torch.rand(4, 4)})
    assert relations.shape == (4, 2, 4) and hops.shape == (4, 2)
    assert ((relations > 0) & (relations < 1)).all()
    torch.testing.assert_close(hops.sum(-1), torch.ones(4))


def test_the_frontier_step_for_a_few_questions_equals_the_whole_graph_step():
    from kgmm.nn import qa

    torch.manual_seed(1)
    graph = RelationGraph(EDGES, TYPES, 5, 2)
    scores = torch.zeros(5, 2)
    scores[0, 0], scores[2, 1], scores[4, 1] = 1.0, 0.5, 0.3
    weights = torch.rand(2, 4)
    weights[:, 3] = 0.0  # a relation nobody follows
    with torch.no_grad():
        frontier = graph.step(scores, weights)
        whole = graph.step(scores.repeat(1, qa.FRONTIER_BATCH), weights.repeat(qa.FRONTIER_BATCH, 1))[:, :2]
    torch.testing.assert_close(frontier, whole)
    torch.testing.assert_close(frontier, loop_step(scores, weights))


def test_the_reader_layer_and_relation_feedback_read_padding_out_and_the_chain_in_order():
    torch.manual_seed(0)
    model = GraphQA(2, 8, steps=3, fusion="early-concat", hidden_channels=16, reader_layers=1,
                    relation_feedback=True, hops_from_steps=True).eval()
    tokens, mask = torch.randn(2, 6, 8), torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    features = {"question": tokens, "graph": torch.rand(2, 4)}
    relations, hops = model.instructions(features, {"question": mask})
    assert relations.shape == (2, 3, 4) and torch.isfinite(relations).all()
    torch.testing.assert_close(relations.sum(-1), torch.ones(2, 3))
    padded = dict(features, question=tokens.clone())
    padded["question"][1, 4:] = 100.0  # what padding holds never changes the reading
    again, _ = model.instructions(padded, {"question": mask})
    torch.testing.assert_close(again[1], relations[1])
    with torch.no_grad():  # a later step's query sees what the step before it chose
        model.relation_feedback.weight.mul_(50.0)
    changed, _ = model.instructions(features, {"question": mask})
    torch.testing.assert_close(changed[:, 0], relations[:, 0])
    torch.testing.assert_close(hops.sum(-1), torch.ones(2))
    assert not torch.allclose(changed[:, 1:], relations[:, 1:], atol=1e-3)


def test_a_model_without_reader_options_keeps_the_parameters_it_was_saved_with():
    plain = GraphQA(2, 8, steps=2, fusion="early-concat", hidden_channels=16)
    assert plain.reader is None and plain.relation_feedback is None
    assert not any(name.startswith(("reader.", "relation_feedback")) for name in plain.state_dict())
