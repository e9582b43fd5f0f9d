"""Multimodal fusion: registered, swappable strategies behind one contract.

Every strategy is built by :func:`build_fusion` from ``modality_dims`` (modality name -> feature width) and
``out_channels`` (classes), and its ``forward`` takes a dict modality name -> features, each either pooled
``[B, d_m]`` or tokens ``[B, T_m, d_m]`` (with an optional token mask ``[B, T_m]``), plus an optional
per-example modality-present mask. A modality left out of the dict, masked out for an example, or whose
tokens are all masked, is absent for that example: its features never reach the output, so a product
without a photo or an ablation ("no graph") needs no other code. The result is a :class:`FusionOutput`.

Strategies (``FUSION_STRATEGIES``):

- ``early-concat``: project each modality, concatenate, MLP.
- ``early-gated``: project to a common width, learned gates (softmax over the present modalities), gated sum.
- ``late``: one classifier head per modality; log-probabilities combined with learned softmaxed weights over
  the present modalities.
- ``hybrid``: the early-concat representation's scores and the late per-modality scores, combined the same way.
- ``cross-attention``: a few Transformer encoder layers over a CLS token and all tokens of all modalities
  (each tagged with a learned modality-type embedding); the CLS state classifies.

The modules know nothing of any task: QA feeds question tokens, an image and graph nodes; diagnosis feeds
findings and images. Token features should carry their own position (contextual encoder states) where
order matters: no positional embedding is added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from kgmm.errors import ValidationError

FUSION_STRATEGIES: dict[str, type[Fusion]] = {}


@dataclass
class FusionOutput:
    """What every fusion strategy returns.

    Args:
        logits (Tensor): ``[B, C]`` class scores (log-probabilities for ``late`` and ``hybrid``).
        embedding (Tensor): ``[B, h]`` the fused representation.
        modality_weights (Tensor, optional): ``[B, M]`` how much each modality counted for each example (0 for
            an absent one), in ``Fusion.modalities`` order; None where the strategy has no such weights
            (``cross-attention`` reports them in eval mode only).
        modality_logits (Tensor, optional): ``[B, M, C]`` per-modality scores of ``late`` and ``hybrid``
            (for auxiliary losses or inspection); None otherwise.
    """

    logits: Tensor
    embedding: Tensor
    modality_weights: Tensor | None = None
    modality_logits: Tensor | None = None


def register_fusion(name: str) -> Callable[[type[Fusion]], type[Fusion]]:
    """Class decorator: make a :class:`Fusion` subclass buildable as ``build_fusion(name, ...)``.

    Raises:
        ValidationError: when ``name`` is already registered.
    """

    def register(cls: type[Fusion]) -> type[Fusion]:
        if name in FUSION_STRATEGIES:
            raise ValidationError(f"fusion strategy {name!r} is already registered ({FUSION_STRATEGIES[name].__name__})")
        cls.strategy = name
        FUSION_STRATEGIES[name] = cls
        return cls

    return register


def build_fusion(name: str, modality_dims: Mapping[str, int], out_channels: int, **options) -> Fusion:
    """Build the fusion strategy ``name``.

    Args:
        name (str): a key of ``FUSION_STRATEGIES`` (``early-concat``, ``early-gated``, ``late``, ``hybrid``,
            ``cross-attention``).
        modality_dims (dict of str to int): modality name -> feature width ``d_m``; the order fixes
            ``Fusion.modalities`` and the columns of ``modality_weights``.
        out_channels (int): number of classes ``C``.
        **options: the strategy's options (``hidden_channels``, ``dropout``, ``modality_dropout``, ...).

    Raises:
        ValidationError: for an unknown name (listing the valid ones) or bad dimensions.
    """
    cls = FUSION_STRATEGIES.get(name)
    if cls is None:
        raise ValidationError(f"no fusion strategy {name!r}; available: {', '.join(FUSION_STRATEGIES)}")
    return cls(modality_dims, out_channels, **options)


class Fusion(torch.nn.Module):
    """Base of the fusion strategies: checks the inputs, builds token masks and the modality-present mask.

    Args:
        modality_dims (dict of str to int): modality name -> feature width.
        out_channels (int): number of classes.
        hidden_channels (int, optional): fused width ``h`` (default 128).
        dropout (float, optional): dropout in the projections and heads (default 0.1).
        modality_dropout (float, optional): while training, drop each present modality of each example with
            this probability, keeping at least one (default 0.0); teaches the model to cope with missing ones.

    Shapes:
        forward: ``features[m]`` ``[B, d_m]`` or ``[B, T_m, d_m]``; ``masks[m]`` ``[B, T_m]`` bool;
        ``present`` ``[B, M]`` bool or a dict ``m -> [B]`` -> :class:`FusionOutput`.
    """

    strategy = "base"

    def __init__(self, modality_dims: Mapping[str, int], out_channels: int, *, hidden_channels: int = 128,
                 dropout: float = 0.1, modality_dropout: float = 0.0) -> None:
        super().__init__()
        name = type(self).__name__
        if not modality_dims:
            raise ValidationError(f"{name}: expected at least one modality in modality_dims, got none")
        for modality, dim in modality_dims.items():
            if not isinstance(modality, str) or not modality:
                raise ValidationError(f"{name}: modality names must be non-empty strings, got {modality!r}")
            if not isinstance(dim, int) or dim < 1:
                raise ValidationError(f"{name}: modality {modality!r} needs an integer width >= 1, got {dim!r}")
        for option, value in (("out_channels", out_channels), ("hidden_channels", hidden_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name}: {option} must be an integer >= 1, got {value!r}")
        for option, value in (("dropout", dropout), ("modality_dropout", modality_dropout)):
            if not 0.0 <= value < 1.0:
                raise ValidationError(f"{name}: {option} must be in [0, 1), got {value!r}")
        self.modality_dims = dict(modality_dims)
        self.modalities = tuple(modality_dims)
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.dropout = dropout
        self.modality_dropout = modality_dropout

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def extra_repr(self) -> str:
        dims = ", ".join(f"{m}={d}" for m, d in self.modality_dims.items())
        return (f"modalities=({dims}), out_channels={self.out_channels}, hidden_channels={self.hidden_channels}, "
                f"dropout={self.dropout}, modality_dropout={self.modality_dropout}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def forward(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None,
                present: Tensor | Mapping[str, Tensor] | None = None) -> FusionOutput:
        """Fuse ``features`` into class scores.

        Args:
            features (dict of str to Tensor): modality -> ``[B, d_m]`` or ``[B, T_m, d_m]``; a modality left out
                is absent for every example.
            masks (dict of str to Tensor, optional): modality -> ``[B, T_m]`` bool, True for real tokens.
            present (Tensor or dict, optional): ``[B, M]`` bool in ``self.modalities`` order, or modality -> ``[B]``
                bool; False marks a modality absent for that example (default: every given modality present).
        """
        tokens, token_masks, present = self._prepare(features, masks or {}, present)
        if self.training and self.modality_dropout > 0:
            present = self._drop_modalities(present)
        return self._fuse(tokens, token_masks, present)

    def _fuse(self, tokens: list[Tensor], token_masks: list[Tensor], present: Tensor) -> FusionOutput:
        raise NotImplementedError

    def _prepare(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor],
                 present: Tensor | Mapping[str, Tensor] | None) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """Return per-modality tokens ``[B, T_m, d_m]`` (zeros when absent), token masks and ``present`` ``[B, M]``."""
        name = type(self).__name__
        unknown = sorted(set(features) - set(self.modalities))
        if unknown:
            raise ValidationError(f"{name}: unknown modalities {unknown}; expected some of {list(self.modalities)}")
        given = [features[m] for m in self.modalities if m in features]
        if not given:
            raise ValidationError(f"{name}: expected features for at least one of {list(self.modalities)}, got none")
        batch, device, dtype = given[0].size(0), given[0].device, given[0].dtype
        tokens, token_masks, columns = [], [], []
        for modality in self.modalities:
            dim = self.modality_dims[modality]
            x = features.get(modality)
            if x is None:
                tokens.append(torch.zeros(batch, 1, dim, device=device, dtype=dtype))
                token_masks.append(torch.zeros(batch, 1, dtype=torch.bool, device=device))
                columns.append(torch.zeros(batch, dtype=torch.bool, device=device))
                continue
            if x.dim() == 2:
                x = x.unsqueeze(1)
            if x.dim() != 3 or x.size(0) != batch or x.size(-1) != dim:
                raise ValidationError(f"{name}: expected {modality!r} features of shape [{batch}, {dim}] or "
                                      f"[{batch}, T, {dim}], got {list(features[modality].shape)}")
            mask = masks.get(modality)
            if mask is None:
                mask = torch.ones(batch, x.size(1), dtype=torch.bool, device=device)
            elif tuple(mask.shape) != (batch, x.size(1)):
                raise ValidationError(f"{name}: expected the {modality!r} mask of shape [{batch}, {x.size(1)}], "
                                      f"got {list(mask.shape)}")
            mask = mask.bool()
            tokens.append(x)
            token_masks.append(mask)
            columns.append(mask.any(dim=1))
        present_mask = torch.stack(columns, dim=1)
        if present is not None:
            if isinstance(present, Mapping):
                extra = sorted(set(present) - set(self.modalities))
                if extra:
                    raise ValidationError(f"{name}: present names unknown modalities {extra}")
                given_present = torch.stack([present[m].bool() if m in present else torch.ones(batch, dtype=torch.bool,
                                                                                               device=device)
                                             for m in self.modalities], dim=1)
            else:
                given_present = present.bool()
            if tuple(given_present.shape) != (batch, len(self.modalities)):
                raise ValidationError(f"{name}: expected present of shape [{batch}, {len(self.modalities)}], "
                                      f"got {list(given_present.shape)}")
            present_mask = present_mask & given_present
        token_masks = [mask & present_mask[:, [i]] for i, mask in enumerate(token_masks)]
        return tokens, token_masks, present_mask

    def _drop_modalities(self, present: Tensor) -> Tensor:
        keep = torch.rand(present.shape, device=present.device) >= self.modality_dropout
        dropped = present & keep
        # An example that lost every modality keeps one of those it had, at random.
        empty = ~dropped.any(dim=1) & present.any(dim=1)
        if empty.any():
            scores = torch.rand(present.shape, device=present.device).masked_fill(~present, -1.0)
            chosen = torch.nn.functional.one_hot(scores.argmax(dim=1), present.size(1)).bool()
            dropped = torch.where(empty.unsqueeze(1), chosen, dropped)
        return dropped


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Average the tokens under ``mask`` (zeros where none).

    Shapes:
        x ``[B, T, d]``, mask ``[B, T]`` -> ``[B, d]``.
    """
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax of ``scores`` over the True entries of ``mask``; all zeros where no entry is True."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return torch.nan_to_num(weights, nan=0.0) * mask


class ModalityProjection(torch.nn.Module):
    """LayerNorm, linear map to the common width, GELU, dropout: one modality's features in fusion space.

    Shapes:
        ``[..., in_channels]`` -> ``[..., out_channels]``.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(in_channels)
        self.linear = torch.nn.Linear(in_channels, out_channels)
        self.dropout = torch.nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        self.linear.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(torch.nn.functional.gelu(self.linear(self.norm(x))))


def _classifier(in_channels: int, hidden_channels: int, out_channels: int, dropout: float) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(in_channels, hidden_channels), torch.nn.GELU(),
                               torch.nn.Dropout(dropout), torch.nn.Linear(hidden_channels, out_channels))


class _PooledFusion(Fusion):
    """A strategy over one vector per modality: the masked mean of its tokens, projected to ``hidden_channels``."""

    def __init__(self, modality_dims: Mapping[str, int], out_channels: int, **options) -> None:
        super().__init__(modality_dims, out_channels, **options)
        self.projections = torch.nn.ModuleDict({
            m: ModalityProjection(d, self.hidden_channels, self.dropout) for m, d in self.modality_dims.items()})

    def _project(self, tokens: list[Tensor], token_masks: list[Tensor], present: Tensor) -> Tensor:
        """Return ``[B, M, h]`` projected pooled features, zero for absent modalities."""
        projected = [self.projections[m](masked_mean(x, mask))
                     for m, x, mask in zip(self.modalities, tokens, token_masks, strict=True)]
        return torch.stack(projected, dim=1) * present.unsqueeze(-1).to(projected[0].dtype)


@register_fusion("early-concat")
class EarlyConcatFusion(_PooledFusion):
    """Early fusion by concatenation: project each modality, concatenate (zeros for absent ones), MLP.

    Args:
        modality_dims (dict of str to int): modality name -> feature width.
        out_channels (int): number of classes.
        **options: see :class:`Fusion`.

    Shapes:
        see :class:`Fusion`; ``embedding`` ``[B, h]`` is the MLP's hidden layer; no ``modality_weights``.
    """

    def __init__(self, modality_dims: Mapping[str, int], out_channels: int, **options) -> None:
        super().__init__(modality_dims, out_channels, **options)
        width = self.hidden_channels
        self.mixer = torch.nn.Sequential(torch.nn.Linear(len(self.modalities) * width, width), torch.nn.GELU(),
                                         torch.nn.Dropout(self.dropout))
        self.head = torch.nn.Linear(width, out_channels)

    def _fuse(self, tokens: list[Tensor], token_masks: list[Tensor], present: Tensor) -> FusionOutput:
        projected = self._project(tokens, token_masks, present)
        embedding = self.mixer(projected.flatten(1))
        return FusionOutput(logits=self.head(embedding), embedding=embedding)


@register_fusion("early-gated")
class EarlyGatedFusion(_PooledFusion):
    """Early fusion by a gated sum: per-example gates (softmax over present modalities) weight the projections.

    Args:
        modality_dims (dict of str to int): modality name -> feature width.
        out_channels (int): number of classes.
        **options: see :class:`Fusion`.

    Shapes:
        see :class:`Fusion`; ``embedding`` ``[B, h]`` is the gated sum; ``modality_weights`` ``[B, M]`` the gates.
    """

    def __init__(self, modality_dims: Mapping[str, int], out_channels: int, **options) -> None:
        super().__init__(modality_dims, out_channels, **options)
        self.gate = torch.nn.Linear(len(self.modalities) * self.hidden_channels, len(self.modalities))
        self.head = _classifier(self.hidden_channels, self.hidden_channels, out_channels, self.dropout)

    def _fuse(self, tokens: list[Tensor], token_masks: list[Tensor], present: Tensor) -> FusionOutput:
        projected = self._project(tokens, token_masks, present)
        weights = masked_softmax(self.gate(projected.flatten(1)), present)
        embedding = (weights.unsqueeze(-1) * projected).sum(dim=1)
        return FusionOutput(logits=self.head(embedding), embedding=embedding, modality_weights=weights)


@register_fusion("late")
class LateFusion(_PooledFusion):
    """Late fusion: a classifier per modality; their log-probabilities averaged with learned softmaxed weights
    over the modalities present (a weighted product of experts).

    Args:
        modality_dims (dict of str to int): modality name -> feature width.
        out_channels (int): number of classes.
        **options: see :class:`Fusion`.

    Shapes:
        see :class:`Fusion`; ``logits`` ``[B, C]`` are log-probabilities; ``embedding`` ``[B, h]`` the weighted
        projections; ``modality_weights`` ``[B, M]``; ``modality_logits`` ``[B, M, C]``.
    """

    def __init__(self, modality_dims: Mapping[str, int], out_channels: int, **options) -> None:
        super().__init__(modality_dims, out_channels, **options)
        self.heads = torch.nn.ModuleDict({m: _classifier(self.hidden_channels, self.hidden_channels, out_channels,
                                                         self.dropout) for m in self.modalities})
        self.modality_logit = torch.nn.Parameter(torch.zeros(len(self.modalities)))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        torch.nn.init.zeros_(self.modality_logit)

    def _modality_scores(self, projected: Tensor) -> Tensor:
        return torch.stack([self.heads[m](projected[:, i]).log_softmax(-1) for i, m in enumerate(self.modalities)],
                           dim=1)

    def _fuse(self, tokens: list[Tensor], token_masks: list[Tensor], present: Tensor) -> FusionOutput:
        projected = self._project(tokens, token_masks, present)
        scores = self._modality_scores(projected)
        weights = masked_softmax(self.modality_logit.expand_as(present), present)
        logits = (weights.unsqueeze(-1) * scores).sum(dim=1)
        embedding = (weights.unsqueeze(-1) * projected).sum(dim=1)
        return FusionOutput(logits=logits, embedding=embedding, modality_weights=weights, modality_logits=scores)


@register_fusion("hybrid")
class HybridFusion(LateFusion):
    """Hybrid fusion: the early-concat classifier's scores and each modality's own scores, combined by learned
    softmaxed weights (the early part always counts; absent modalities do not).

    Args:
        modality_dims (dict of str to int): modality name -> feature width.
        out_channels (int): number of classes.
        **options: see :class:`Fusion`.

    Shapes:
        see :class:`Fusion`; ``logits`` ``[B, C]`` are log-probabilities; ``embedding`` ``[B, h]`` the early
        representation; ``modality_weights`` ``[B, M]`` the modalities' own shares (the early part takes the rest);
        ``modality_logits`` ``[B, M, C]``.
    """

    def __init__(self, modality_dims: Mapping[str, int], out_channels: int, **options) -> None:
        super().__init__(modality_dims, out_channels, **options)
        width = self.hidden_channels
        self.mixer = torch.nn.Sequential(torch.nn.Linear(len(self.modalities) * width, width), torch.nn.GELU(),
                                         torch.nn.Dropout(self.dropout))
        self.early_head = torch.nn.Linear(width, out_channels)
        self.early_logit = torch.nn.Parameter(torch.zeros(1))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        torch.nn.init.zeros_(self.early_logit)

    def _fuse(self, tokens: list[Tensor], token_masks: list[Tensor], present: Tensor) -> FusionOutput:
        projected = self._project(tokens, token_masks, present)
        embedding = self.mixer(projected.flatten(1))
        scores = self._modality_scores(projected)
        early = self.early_head(embedding).log_softmax(-1)
        all_scores = torch.cat([early.unsqueeze(1), scores], dim=1)
        always = torch.ones_like(present[:, :1])
        weights = masked_softmax(torch.cat([self.early_logit, self.modality_logit]).expand(present.size(0), -1),
                                 torch.cat([always, present], dim=1))
        logits = (weights.unsqueeze(-1) * all_scores).sum(dim=1)
        return FusionOutput(logits=logits, embedding=embedding, modality_weights=weights[:, 1:],
                            modality_logits=scores)


@register_fusion("cross-attention")
class CrossAttentionFusion(Fusion):
    """Cross-modal attention: Transformer encoder layers over ``[CLS]`` plus every token of every modality.

    Each modality's tokens are projected to ``hidden_channels`` and tagged with a learned modality-type
    embedding; padding tokens and absent modalities are masked out of attention; the final ``[CLS]`` state is
    the embedding and is classified.

    Args:
        modality_dims (dict of str to int): modality name -> feature width.
        out_channels (int): number of classes.
        num_layers (int, optional): encoder layers (default 2).
        num_heads (int, optional): attention heads; must divide ``hidden_channels`` (default 4).
        **options: see :class:`Fusion`.

    Shapes:
        see :class:`Fusion`; ``embedding`` ``[B, h]`` is the ``[CLS]`` state; ``modality_weights`` ``[B, M]`` is
        the last layer's ``[CLS]`` attention summed over each modality's tokens (averaged over heads), in eval
        mode only (None while training).
    """

    def __init__(self, modality_dims: Mapping[str, int], out_channels: int, *, num_layers: int = 2,
                 num_heads: int = 4, **options) -> None:
        super().__init__(modality_dims, out_channels, **options)
        width = self.hidden_channels
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValidationError(f"CrossAttentionFusion: num_layers must be an integer >= 1, got {num_layers!r}")
        if not isinstance(num_heads, int) or num_heads < 1 or width % num_heads:
            raise ValidationError(f"CrossAttentionFusion: num_heads must divide hidden_channels={width}, "
                                  f"got {num_heads!r}")
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.projections = torch.nn.ModuleDict({
            m: torch.nn.Sequential(torch.nn.LayerNorm(d), torch.nn.Linear(d, width))
            for m, d in self.modality_dims.items()})
        self.modality_embedding = torch.nn.Embedding(len(self.modalities), width)
        self.cls = torch.nn.Parameter(torch.zeros(1, 1, width))
        self.layers = torch.nn.ModuleList([
            torch.nn.TransformerEncoderLayer(width, num_heads, dim_feedforward=2 * width, dropout=self.dropout,
                                             activation="gelu", batch_first=True, norm_first=True)
            for _ in range(num_layers)])
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for projection in self.projections.values():
            for module in projection:
                module.reset_parameters()
        torch.nn.init.normal_(self.modality_embedding.weight, std=0.02)
        torch.nn.init.normal_(self.cls, std=0.02)
        for layer in self.layers:
            for parameter in layer.parameters():
                if parameter.dim() > 1:
                    torch.nn.init.xavier_uniform_(parameter)
                else:
                    torch.nn.init.zeros_(parameter)
            layer.norm1.reset_parameters()
            layer.norm2.reset_parameters()
        self.norm.reset_parameters()
        self.head.reset_parameters()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_layers={self.num_layers}, num_heads={self.num_heads}"

    def _fuse(self, tokens: list[Tensor], token_masks: list[Tensor], present: Tensor) -> FusionOutput:
        batch = present.size(0)
        sequence = [self.cls.expand(batch, -1, -1)]
        keep = [torch.ones(batch, 1, dtype=torch.bool, device=present.device)]
        owner = [torch.full((1,), -1, dtype=torch.long, device=present.device)]
        for index, (modality, x, mask) in enumerate(zip(self.modalities, tokens, token_masks, strict=True)):
            projected = self.projections[modality](x) + self.modality_embedding.weight[index]
            sequence.append(projected * mask.unsqueeze(-1).to(projected.dtype))
            keep.append(mask)
            owner.append(torch.full((x.size(1),), index, dtype=torch.long, device=present.device))
        hidden = torch.cat(sequence, dim=1)
        padding = ~torch.cat(keep, dim=1)
        for layer in self.layers[:-1]:
            hidden = layer(hidden, src_key_padding_mask=padding)
        last = self.layers[-1]
        weights = None
        if not self.training:  # read-out only: an extra attention pass that training does not need
            # The last layer's [CLS] attention, from its own attention block, gives the modality weights.
            with torch.no_grad():
                normed = last.norm1(hidden)
                _, attention = last.self_attn(normed[:, :1], normed, normed, key_padding_mask=padding)
            token_owner = torch.cat(owner)
            weights = torch.stack([attention[:, 0, token_owner == i].sum(dim=-1)
                                   for i in range(len(self.modalities))], dim=1) * present
        hidden = last(hidden, src_key_padding_mask=padding)
        embedding = self.norm(hidden[:, 0])
        return FusionOutput(logits=self.head(embedding), embedding=embedding, modality_weights=weights)
