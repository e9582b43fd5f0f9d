"""Contrastive alignment: projection heads into one joint space, and the symmetric InfoNCE loss.

:class:`AlignmentModel` maps frozen image features, frozen sentence embeddings and (optionally) graph
entity embeddings into one L2-normalised space. Entities go through the text head from their
``"name (type)"`` text, plus the graph head when graph embeddings are given.

A head may start as the identity on part of its input (``skip_from``): the text head starts as the sentence
encoder itself, and an image head whose input ends with a text-space description of the image (e.g. its
ImageNet labels embedded by the sentence encoder) starts as that zero-shot matcher. Training then learns a
correction, and weight decay pulls towards the zero-shot start rather than towards nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kgmm.errors import ValidationError

__all__ = ["AlignmentConfig", "AlignmentModel", "AlignmentOutput", "ContrastiveLoss", "ProjectionHead", "info_nce"]


@dataclass
class AlignmentConfig:
    """Sizes and options of an :class:`AlignmentModel`.

    Args:
        image_channels (int): size of the image features (1280 for EfficientNet-Lite0, plus any text-space prior).
        text_channels (int): size of the sentence embeddings (384 for MiniLM).
        out_channels (int): size of the joint space. (default: 384)
        graph_channels (int, optional): size of graph entity embeddings; None for no graph head. (default: None)
        hidden_channels (int, optional): a hidden layer in each head; None for linear heads. (default: None)
        dropout (float): dropout on the head inputs during training. (default: 0.2)
        image_skip_from (int, optional): the image features from this index on (``out_channels`` of them) are
            added to the image head's output. (default: None)
        text_skip (bool): add the text input to the text head's output (needs ``text_channels == out_channels``).
            (default: True)
        temperature (float): the initial softmax temperature (learned). (default: 0.05)
    """

    image_channels: int
    text_channels: int
    out_channels: int = 384
    graph_channels: int | None = None
    hidden_channels: int | None = None
    dropout: float = 0.2
    image_skip_from: int | None = None
    text_skip: bool = True
    temperature: float = 0.05

    def __post_init__(self) -> None:
        for name in ("image_channels", "text_channels", "out_channels"):
            if getattr(self, name) < 1:
                raise ValidationError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValidationError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.temperature <= 0:
            raise ValidationError(f"temperature must be positive, got {self.temperature}")
        if self.image_skip_from is not None and self.image_skip_from + self.out_channels > self.image_channels:
            raise ValidationError(f"image_skip_from={self.image_skip_from} needs image features of at least "
                                  f"{self.image_skip_from + self.out_channels} channels, got {self.image_channels}")
        if self.text_skip and self.text_channels != self.out_channels:
            raise ValidationError(f"text_skip needs text_channels == out_channels, got {self.text_channels} and "
                                  f"{self.out_channels}; set text_skip=False")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AlignmentConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationError(f"unknown alignment config key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**data)


@dataclass
class AlignmentOutput:
    """Joint-space embeddings (rows L2-normalised) and the temperature.

    Args:
        image (Tensor, optional): ``[N, out_channels]``.
        text (Tensor, optional): ``[M, out_channels]``.
        temperature (Tensor): the current softmax temperature (a scalar).
    """

    image: Tensor | None
    text: Tensor | None
    temperature: Tensor


class ProjectionHead(nn.Module):
    """Standardise, drop out, project (linearly or through one hidden layer), optionally add a skip slice.

    Args:
        in_channels (int): input size.
        out_channels (int): output size.
        hidden_channels (int, optional): a GELU hidden layer of this size. (default: None, linear)
        dropout (float, optional): dropout on the standardised input. (default: 0.0)
        skip_from (int, optional): add ``x[:, skip_from:skip_from + out_channels]`` to the output; the
            projection then starts at zero, so the head starts as that slice. (default: None)

    Shapes:
        x ``[N, in_channels]`` -> ``[N, out_channels]`` (not normalised).
    """

    def __init__(self, in_channels: int, out_channels: int, *, hidden_channels: int | None = None,
                 dropout: float = 0.0, skip_from: int | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.skip_from = skip_from
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))
        self.dropout = nn.Dropout(dropout)
        if hidden_channels:
            self.project = nn.Sequential(nn.Linear(in_channels, hidden_channels), nn.GELU(),
                                         nn.Linear(hidden_channels, out_channels))
        else:
            self.project = nn.Linear(in_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        last = self.project[-1] if isinstance(self.project, nn.Sequential) else self.project
        for layer in self.project.modules():
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        if self.skip_from is not None:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    @torch.no_grad()
    def set_input_statistics(self, x: Tensor) -> None:
        """Standardise inputs with the mean and standard deviation of ``x`` (the training features)."""
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValidationError(f"expected features of shape [N, {self.in_channels}], got {list(x.shape)}")
        self.input_mean.copy_(x.mean(0))
        self.input_std.copy_(x.std(0, unbiased=False).clamp(min=1e-4) if x.size(0) > 1 else torch.ones_like(x[0]))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValidationError(f"expected x of shape [N, {self.in_channels}], got {list(x.shape)}")
        out = self.project(self.dropout((x - self.input_mean) / self.input_std))
        if self.skip_from is not None:
            out = out + x[:, self.skip_from:self.skip_from + self.out_channels]
        return out

    def __repr__(self) -> str:
        skip = f", skip_from={self.skip_from}" if self.skip_from is not None else ""
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}{skip})"


class AlignmentModel(nn.Module):
    """Image, text and graph-entity projection heads into one joint space, with a learned temperature.

    Args:
        config (AlignmentConfig): sizes and options.

    Shapes:
        forward: image features ``[N, image_channels]`` and/or text features ``[M, text_channels]`` ->
        :class:`AlignmentOutput` with ``[N, out_channels]`` and ``[M, out_channels]``, rows L2-normalised.
    """

    def __init__(self, config: AlignmentConfig) -> None:
        super().__init__()
        self.config = config
        self.image_head = ProjectionHead(config.image_channels, config.out_channels, hidden_channels=config.hidden_channels,
                                         dropout=config.dropout, skip_from=config.image_skip_from)
        self.text_head = ProjectionHead(config.text_channels, config.out_channels, hidden_channels=config.hidden_channels,
                                        dropout=config.dropout, skip_from=0 if config.text_skip else None)
        self.graph_head = (nn.Linear(config.graph_channels, config.out_channels, bias=False)
                           if config.graph_channels else None)
        self.log_inverse_temperature = nn.Parameter(torch.tensor(math.log(1.0 / config.temperature)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.image_head.reset_parameters()
        self.text_head.reset_parameters()
        if self.graph_head is not None:
            nn.init.zeros_(self.graph_head.weight)  # entities start as their text
        with torch.no_grad():
            self.log_inverse_temperature.fill_(math.log(1.0 / self.config.temperature))

    @property
    def temperature(self) -> Tensor:
        """The softmax temperature, kept within [0.01, 1]."""
        return 1.0 / self.log_inverse_temperature.clamp(0.0, math.log(100.0)).exp()

    def embed_image(self, x: Tensor) -> Tensor:
        """Joint-space embeddings of image features ``[N, image_channels]`` -> ``[N, out_channels]``."""
        return F.normalize(self.image_head(x), dim=-1)

    def embed_text(self, x: Tensor) -> Tensor:
        """Joint-space embeddings of sentence embeddings ``[M, text_channels]`` -> ``[M, out_channels]``."""
        return F.normalize(self.text_head(x), dim=-1)

    def embed_entity(self, text: Tensor, graph: Tensor | None = None) -> Tensor:
        """Joint-space embeddings of entities from their ``"name (type)"`` sentence embeddings, plus graph embeddings.

        Shapes:
            text ``[E, text_channels]``, graph ``[E, graph_channels]`` (optional) -> ``[E, out_channels]``.
        """
        out = self.text_head(text)
        if graph is not None:
            if self.graph_head is None:
                raise ValidationError("this model has no graph head (graph_channels=None); pass no graph embeddings")
            if graph.shape != (text.size(0), self.graph_head.in_features):
                raise ValidationError(f"expected graph embeddings of shape [{text.size(0)}, {self.graph_head.in_features}], "
                                      f"got {list(graph.shape)}")
            out = out + self.graph_head(graph)
        return F.normalize(out, dim=-1)

    def forward(self, image: Tensor | None = None, text: Tensor | None = None) -> AlignmentOutput:
        return AlignmentOutput(
            image=self.embed_image(image) if image is not None else None,
            text=self.embed_text(text) if text is not None else None,
            temperature=self.temperature,
        )

    def __repr__(self) -> str:
        c = self.config
        return (f"{type(self).__name__}(image={c.image_channels}, text={c.text_channels}, graph={c.graph_channels}, "
                f"out={c.out_channels})")


@dataclass
class ContrastiveLoss:
    """The symmetric InfoNCE loss and its two directions.

    Args:
        loss (Tensor): the mean of the two directions (a scalar, differentiable).
        image_to_text (Tensor): the image->text cross-entropy.
        text_to_image (Tensor): the text->image cross-entropy.
    """

    loss: Tensor
    image_to_text: Tensor
    text_to_image: Tensor


def info_nce(image_emb: Tensor, text_emb: Tensor, temperature: Tensor | float,
             positives: Tensor | None = None) -> ContrastiveLoss:
    """Symmetric InfoNCE between images and texts, several positives allowed per row and column.

    For each image, the loss is ``-log(sum of exp(sim / T) over its texts / sum over all texts)``; for each
    text, likewise over images. Texts of the same image (several captions) are positives, never negatives.

    Args:
        image_emb (Tensor): ``[N, d]`` image embeddings (normalised).
        text_emb (Tensor): ``[M, d]`` text embeddings (normalised).
        temperature (Tensor or float): the softmax temperature.
        positives (Tensor, optional): ``[N, M]`` booleans, True where text j describes image i; every row and
            column needs at least one. (default: None, the diagonal, N == M)

    Shapes:
        image_emb ``[N, d]``, text_emb ``[M, d]``, positives ``[N, M]``.
    """
    if image_emb.dim() != 2 or text_emb.dim() != 2 or image_emb.size(1) != text_emb.size(1):
        raise ValidationError(f"expected embeddings [N, d] and [M, d], got {list(image_emb.shape)} and {list(text_emb.shape)}")
    if positives is None:
        if image_emb.size(0) != text_emb.size(0):
            raise ValidationError(f"without positives, expected as many images as texts, got {image_emb.size(0)} and "
                                  f"{text_emb.size(0)}")
        positives = torch.eye(image_emb.size(0), dtype=torch.bool, device=image_emb.device)
    if positives.shape != (image_emb.size(0), text_emb.size(0)):
        raise ValidationError(f"expected positives of shape [{image_emb.size(0)}, {text_emb.size(0)}], got {list(positives.shape)}")
    if not bool(positives.any(1).all()) or not bool(positives.any(0).all()):
        raise ValidationError("every image and every text needs at least one positive")
    logits = image_emb @ text_emb.t() / temperature
    masked = logits.masked_fill(~positives, float("-inf"))
    image_to_text = (torch.logsumexp(logits, 1) - torch.logsumexp(masked, 1)).mean()
    text_to_image = (torch.logsumexp(logits, 0) - torch.logsumexp(masked, 0)).mean()
    return ContrastiveLoss((image_to_text + text_to_image) / 2, image_to_text, text_to_image)
