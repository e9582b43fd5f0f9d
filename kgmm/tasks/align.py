"""Contrastive image–text alignment: train projection heads, evaluate cross-modal retrieval, embed for search.

Data: image–text pairs read by :func:`kgmm.sources.pairs.read_pairs` and split by image
(:func:`kgmm.sources.pairs.split_pairs`, ``holdout`` and ``seed`` saved with the model, so evaluation sees
the same held-out images).

Features are frozen: image features from :func:`kgmm.nn.vision.encode_image_files` (cached by content) and
sentence embeddings from :class:`kgmm.nn.text.TextEncoder`. With the default EfficientNet-Lite0, each image
also gets a text-space prior: its top ImageNet labels (computed from the cached pooled features through the
network's own classifier) embedded by the sentence encoder and weighted by probability. The image head starts
as that prior, the text head as the sentence encoder, so the untrained model is the zero-shot baseline and
training learns a correction.

Training (:func:`train_align`): symmetric InfoNCE between the images of a batch and one caption of each
(drawn afresh every epoch, so every caption is used), texts of the same image or with the same wording being
positives; plus, when the pairs carry categorical labels (article type, modality, ...), a cross-entropy
pulling each image and its text towards the entity ``"value (column)"`` of each label. Only the heads train
(AdamW, dropout, weight decay towards the zero-shot start). The number of epochs is chosen on a validation
slice of the training images; the heads are then refit on all training images for that many epochs. The
held-out images are never used for training or selection.

Evaluation (:func:`evaluate_align`): image->text and text->image Recall@1/5/10, median and mean rank; ties
count against the model. Several captions per image: image->text is a hit when any of its captions is within
k (rank = that of its best caption). ``candidates=N`` ranks each query among its own item and ``N - 1`` others
drawn deterministically. ``label=COLUMN`` adds top-1 accuracy of the label by the nearest aligned entity.
``baseline="imagenet-labels"`` scores the zero-training baseline through the same code.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgmm.errors import KgmmError, SourceError, ValidationError
from kgmm.sources.pairs import ImageTextPair, PairSplit, read_pairs, split_pairs
from kgmm.tasks.checkpoint import read_model_config
from kgmm.utils import seed_everything

if TYPE_CHECKING:
    import torch

    from kgmm.nn.align import AlignmentConfig, AlignmentModel

__all__ = [
    "AlignHyperParams",
    "AlignedModel",
    "ImageNetLabelBaseline",
    "evaluate_align",
    "load_align_model",
    "retrieval_ranks",
    "train_align",
]

MODEL_KIND = "kgmm-align-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
METRICS_FILE = "metrics.json"
RECALL_AT = (1, 5, 10)
BASELINES = ("imagenet-labels",)
SPLITS = ("holdout", "train", "all")
DEFAULT_VISION_MODEL = "efficientnet-lite0"
MIN_VALIDATION_IMAGES = 8  # a smaller validation slice cannot rank epochs: train for all of them instead


@dataclass(frozen=True)
class AlignHyperParams:
    """Training settings of :func:`train_align`.

    Args:
        epochs (int): most epochs; the best number is chosen on the validation slice. (default: 150)
        batch_size (int): images per step. (default: 128)
        lr (float): AdamW learning rate. (default: 0.001)
        weight_decay (float): AdamW weight decay (towards the zero-shot start when the heads have one). (default: 1.0)
        dropout (float): dropout on the head inputs. (default: 0.3)
        hidden_channels (int or None): a hidden layer in the heads; None for linear heads. (default: None)
        temperature (float): initial softmax temperature (learned). (default: 0.1)
        entity_weight (float): weight of the label-entity loss (0 turns it off). (default: 1.0)
        val_fraction (float): share of the training images that selects the number of epochs; with fewer than
            8 such images, training runs all epochs. (default: 0.15)
        label_prior (bool): add the ImageNet-label prior to the image features (EfficientNet only). (default: True)
        prior_top_k (int): ImageNet labels per image in the prior and the baseline. (default: 5)
        max_label_values (float): a label column is an entity type when it has at least 2 and at most this
            share of the training images' count of distinct values (ids and free text are not). (default: 0.8)
    """

    epochs: int = 150
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1.0
    dropout: float = 0.3
    hidden_channels: int | None = None
    temperature: float = 0.1
    entity_weight: float = 1.0
    val_fraction: float = 0.15
    label_prior: bool = True
    prior_top_k: int = 5
    max_label_values: float = 0.8


def _resolve_hparams(overrides: dict | None) -> AlignHyperParams:
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    valid = {f.name for f in fields(AlignHyperParams)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValidationError(f"unknown alignment hyper-parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    hparams = replace(AlignHyperParams(), **overrides)
    for name in ("epochs", "batch_size", "prior_top_k"):
        if getattr(hparams, name) < 1:
            raise ValidationError(f"{name} must be at least 1, got {getattr(hparams, name)}")
    if hparams.lr <= 0 or hparams.weight_decay < 0 or hparams.entity_weight < 0:
        raise ValidationError("lr must be positive, weight_decay and entity_weight non-negative, got "
                              f"{hparams.lr}, {hparams.weight_decay}, {hparams.entity_weight}")
    if not 0.0 <= hparams.val_fraction < 1.0:
        raise ValidationError(f"val_fraction must be in [0, 1), got {hparams.val_fraction}")
    return hparams


@dataclass
class _Groups:
    """Pairs grouped by image: one image per group, every text with the index of its group."""

    names: list[str]
    images: list[Path]
    texts: list[str]
    text_group: list[int]
    labels: list[dict[str, str]]

    @classmethod
    def of(cls, pairs: Sequence[ImageTextPair]) -> _Groups:
        index: dict[str, int] = {}
        groups = cls([], [], [], [], [])
        for pair in pairs:
            if pair.group not in index:
                index[pair.group] = len(groups.names)
                groups.names.append(pair.group)
                groups.images.append(pair.image)
                groups.labels.append(dict(pair.labels))
            groups.texts.append(pair.text)
            groups.text_group.append(index[pair.group])
        return groups

    def __len__(self) -> int:
        return len(self.names)


def _entity_columns(groups: _Groups, max_share: float) -> dict[str, list[str]]:
    """Label columns that look categorical on these groups, with their sorted values."""
    values: dict[str, set[str]] = {}
    for labels in groups.labels:
        for column, value in labels.items():
            values.setdefault(column, set()).add(value)
    limit = max(2, int(max_share * len(groups)))
    return {column: sorted(found) for column, found in sorted(values.items()) if 2 <= len(found) <= limit}


def entity_text(name: str, entity_type: str) -> str:
    """The text an entity is embedded from: ``"name (type)"``."""
    return f"{name} ({entity_type})"


class _FrozenEncoders:
    """The frozen vision and text encoders of a model, loaded when first needed."""

    def __init__(self, vision_model: Any = None, text_model: Any = None, *, cache_dir: Any = None) -> None:
        self.vision_model = vision_model
        self.text_model = text_model
        self.cache_dir = cache_dir
        self._text = text_model if hasattr(text_model, "encode") else None
        self._classifier: tuple[torch.Tensor, torch.Tensor] | None = None
        self._label_embeddings: torch.Tensor | None = None

    @property
    def vision_name(self) -> str:
        model = self.vision_model
        if model is None:
            return DEFAULT_VISION_MODEL
        if hasattr(model, "encode"):
            return str(getattr(model, "path", DEFAULT_VISION_MODEL)) if not _is_efficientnet(model) else DEFAULT_VISION_MODEL
        return str(model)

    @property
    def has_imagenet_head(self) -> bool:
        model = self.vision_model
        return model is None or str(model) == DEFAULT_VISION_MODEL or _is_efficientnet(model)

    @property
    def text(self):
        if self._text is None:
            from kgmm.nn.text import TextEncoder

            self._text = TextEncoder(self.text_model)
        return self._text

    def text_fingerprint(self) -> str:
        if self._text is not None:
            return self._text.fingerprint
        from kgmm.nn.text import text_encoder_fingerprint

        return text_encoder_fingerprint(self.text_model)

    def pooled(self, paths: Sequence[Path], *, progress: bool = False) -> torch.Tensor:
        from kgmm.nn.vision import encode_image_files

        return encode_image_files(paths, self.vision_model, cache_dir=self.cache_dir, progress=progress)

    def vision_fingerprint(self) -> str:
        from kgmm.nn.vision import _named_fingerprint

        if hasattr(self.vision_model, "fingerprint"):
            return self.vision_model.fingerprint
        return _named_fingerprint(self.vision_model)

    def encode_texts(self, texts: Sequence[str], *, progress: bool = False) -> torch.Tensor:
        import torch

        if not texts:
            return torch.empty(0, self.text.dim)
        return self.text.encode(list(texts), progress=progress)

    def label_prior(self, pooled: torch.Tensor, top_k: int) -> torch.Tensor:
        """``[n, text_dim]``: each image's top ImageNet labels, embedded and weighted by probability (normalised)."""
        import torch

        weight, bias = self._imagenet_classifier()
        probabilities = (pooled @ weight.t() + bias).softmax(-1)
        top = probabilities.topk(top_k, dim=-1)
        labels = self._imagenet_label_embeddings()
        mixed = (top.values.unsqueeze(-1) * labels[top.indices]).sum(1)
        return torch.nn.functional.normalize(mixed, dim=-1)

    def _imagenet_classifier(self) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        if self._classifier is None:
            if _is_efficientnet(self.vision_model):
                layer = self.vision_model.model._fc
                self._classifier = (layer.weight.detach().float(), layer.bias.detach().float())
            else:
                from kgmm.nn.vision import default_vision_weights_path

                state = torch.load(default_vision_weights_path(), map_location="cpu", weights_only=True)
                self._classifier = (state["_fc.weight"].float(), state["_fc.bias"].float())
        return self._classifier

    def _imagenet_label_embeddings(self) -> torch.Tensor:
        """The sentence embeddings of the 1,000 ImageNet class names, cached on disk per text encoder."""
        import torch

        from kgmm.nn.vision import imagenet_labels
        from kgmm.utils import cache_dir

        if self._label_embeddings is None:
            cache = cache_dir() / "align" / f"imagenet-labels-{self.text_fingerprint()}.pt"
            if cache.is_file():
                try:
                    self._label_embeddings = torch.load(cache, map_location="cpu", weights_only=True)
                except Exception:  # a damaged cache file is recomputed
                    self._label_embeddings = None
            if self._label_embeddings is None:
                self._label_embeddings = self.encode_texts(imagenet_labels())
                cache.parent.mkdir(parents=True, exist_ok=True)
                temporary = cache.with_suffix(".tmp")
                torch.save(self._label_embeddings, temporary)
                temporary.replace(cache)
        return self._label_embeddings


def _is_efficientnet(model: Any) -> bool:
    from kgmm.nn.vision import EfficientNetLiteEncoder

    return isinstance(model, EfficientNetLiteEncoder)


def _image_features(encoders: _FrozenEncoders, paths: Sequence[Path], *, prior_top_k: int | None,
                    progress: bool = False) -> torch.Tensor:
    """The head input of each image: pooled features, then the label prior when ``prior_top_k`` is set."""
    import torch

    pooled = encoders.pooled(paths, progress=progress)
    if prior_top_k is None:
        return pooled
    return torch.cat([pooled, encoders.label_prior(pooled, prior_top_k)], dim=1)


class AlignedModel:
    """A trained alignment: embed images, texts and entities into one L2-normalised space.

    Loaded with :func:`load_align_model`. ``dim`` is the joint space's size; ``fingerprint`` identifies the
    heads and the frozen encoders (embeddings of different fingerprints never mix).
    """

    def __init__(self, module: AlignmentModel, config: dict, encoders: _FrozenEncoders, fingerprint: str) -> None:
        self.module = module.eval()
        self.config = config
        self.encoders = encoders
        self.fingerprint = fingerprint
        self.dim = module.config.out_channels
        self.prior_top_k = config["vision"].get("prior_top_k")
        self.entity_columns: dict[str, list[str]] = config.get("entity_columns", {})

    def __repr__(self) -> str:
        return f"AlignedModel({self.fingerprint}, dim={self.dim})"

    def embed_image_features(self, features: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            return self.module.embed_image(features)

    def embed_image_files(self, paths: Sequence[str | Path], *, progress: bool = False) -> torch.Tensor:
        """``[n, dim]`` joint-space embeddings of image files (features cached by content)."""
        features = _image_features(self.encoders, [Path(p) for p in paths], prior_top_k=self.prior_top_k,
                                   progress=progress)
        return self.embed_image_features(features)

    def embed_texts(self, texts: Sequence[str], *, progress: bool = False) -> torch.Tensor:
        """``[n, dim]`` joint-space embeddings of texts (captions, titles, queries)."""
        import torch

        features = self.encoders.encode_texts(texts, progress=progress)
        with torch.no_grad():
            return self.module.embed_text(features)

    def embed_entities(self, names: Sequence[str], types: Sequence[str], *,
                       graph_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """``[n, dim]`` joint-space embeddings of entities from ``"name (type)"`` (plus graph embeddings if given)."""
        import torch

        names, types = list(names), list(types)
        if len(names) != len(types):
            raise ValidationError(f"expected one type per entity name, got {len(names)} names and {len(types)} types")
        features = self.encoders.encode_texts([entity_text(n, t) for n, t in zip(names, types, strict=True)])
        with torch.no_grad():
            return self.module.embed_entity(features, graph_embeddings)


class ImageNetLabelBaseline:
    """The zero-training baseline: an image is its top ImageNet labels embedded by the sentence encoder
    (probability-weighted), matched to sentence embeddings of texts and ``"name (type)"`` entities."""

    def __init__(self, encoders: _FrozenEncoders, *, top_k: int = 5) -> None:
        if not encoders.has_imagenet_head:
            raise ValidationError("the imagenet-labels baseline needs the EfficientNet-Lite0 ImageNet classifier; "
                                  "evaluate it without --vision-model")
        self.encoders = encoders
        self.top_k = top_k
        self.fingerprint = f"imagenet-labels-top{top_k}"

    def embed_image_files(self, paths: Sequence[str | Path], *, progress: bool = False) -> torch.Tensor:
        pooled = self.encoders.pooled([Path(p) for p in paths], progress=progress)
        return self.encoders.label_prior(pooled, self.top_k)

    def embed_texts(self, texts: Sequence[str], *, progress: bool = False) -> torch.Tensor:
        return self.encoders.encode_texts(texts, progress=progress)

    def embed_entities(self, names: Sequence[str], types: Sequence[str]) -> torch.Tensor:
        return self.encoders.encode_texts([entity_text(n, t) for n, t in zip(names, types, strict=True)])


@dataclass
class RetrievalRanks:
    """Ranks (1 the best) of each image->text query (per image) and text->image query (per text)."""

    image_to_text: torch.Tensor
    text_to_image: torch.Tensor
    pool_size: int

    def metrics(self) -> dict:
        return {"image_to_text": _rank_summary(self.image_to_text), "text_to_image": _rank_summary(self.text_to_image),
                "pool_size": self.pool_size}


def _rank_summary(ranks: torch.Tensor) -> dict:
    if ranks.numel() == 0:
        return {**{f"R@{k}": 0.0 for k in RECALL_AT}, "median_rank": 0.0, "mean_rank": 0.0, "queries": 0}
    ranks = ranks.double()
    summary = {f"R@{k}": round(float((ranks <= k).double().mean()), 4) for k in RECALL_AT}
    summary["median_rank"] = float(statistics.median(ranks.tolist()))
    summary["mean_rank"] = round(float(ranks.mean()), 2)
    summary["queries"] = int(ranks.numel())
    return summary


def retrieval_ranks(image_emb: torch.Tensor, text_emb: torch.Tensor, text_group: torch.Tensor, *,
                    candidates: int | None = None, seed: int = 0) -> RetrievalRanks:
    """Rank every image's captions among texts and every text's image among images (ties against the model).

    Args:
        image_emb (Tensor): ``[G, d]`` one embedding per image.
        text_emb (Tensor): ``[T, d]`` text embeddings.
        text_group (Tensor): ``[T]`` the image index of each text.
        candidates (int, optional): rank each query among its own image (or captions) and ``candidates - 1``
            other images (or their captions) drawn with ``seed``; None or more than there are: all. (default: None)
        seed (int, optional): draws the candidate pools. (default: 0)

    Returns:
        RetrievalRanks: image->text ranks ``[G]`` (rank of the best own caption among the pool's texts,
        the other own captions left out) and text->image ranks ``[T]``.
    """
    import torch

    num_images = image_emb.size(0)
    if text_group.shape != (text_emb.size(0),):
        raise ValidationError(f"expected text_group of shape [{text_emb.size(0)}], got {list(text_group.shape)}")
    pool_size = num_images if candidates is None else max(1, min(candidates, num_images))
    scores = image_emb @ text_emb.t()  # [G, T]
    own = text_group.unsqueeze(0) == torch.arange(num_images).unsqueeze(1)  # [G, T]

    def pools(queries_group: torch.Tensor, generator_seed: int) -> torch.Tensor:
        """``[Q, G]`` True for the images in each query's pool."""
        if pool_size >= num_images:
            return torch.ones(len(queries_group), num_images, dtype=torch.bool)
        generator = torch.Generator().manual_seed(generator_seed)
        draw = torch.rand(len(queries_group), num_images, generator=generator)
        draw[torch.arange(len(queries_group)), queries_group] = 2.0  # own image always in
        chosen = draw.topk(pool_size, dim=1).indices
        return torch.zeros(len(queries_group), num_images, dtype=torch.bool).scatter_(1, chosen, True)

    image_pool = pools(torch.arange(num_images), seed)[:, text_group]  # [G, T] texts of pooled images
    best_own = scores.masked_fill(~own, float("-inf")).max(1, keepdim=True).values
    image_to_text = 1 + ((scores >= best_own) & ~own & image_pool).sum(1)
    if not bool(own.any(1).all()):
        raise ValidationError("every image needs at least one text")

    text_scores = scores.t()  # [T, G]
    text_pool = pools(text_group, seed + 1)
    own_score = text_scores.gather(1, text_group.unsqueeze(1))
    others = torch.ones_like(text_pool)
    others[torch.arange(len(text_group)), text_group] = False
    text_to_image = 1 + ((text_scores >= own_score) & others & text_pool).sum(1)
    return RetrievalRanks(image_to_text, text_to_image, pool_size)


def _label_accuracy(image_emb: torch.Tensor, labels: list[str | None], entity_emb: torch.Tensor,
                    values: list[str]) -> dict:
    """Top-1 accuracy of the nearest entity's value against each image's label (images without it skipped)."""
    known = [i for i, label in enumerate(labels) if label is not None]
    if not known or not values:
        return {"top1": 0.0, "images": 0, "classes": len(values)}
    nearest = (image_emb[known] @ entity_emb.t()).argmax(1).tolist()
    correct = sum(values[j] == labels[i] for i, j in zip(known, nearest, strict=True))
    return {"top1": round(correct / len(known), 4), "images": len(known), "classes": len(values)}


@dataclass
class _Features:
    """Frozen features of one side of a split: images per group, texts, entity indices per label column."""

    images: torch.Tensor
    texts: torch.Tensor
    text_group: torch.Tensor
    text_key: torch.Tensor  # texts of equal wording share a key: they are positives of each other's images
    entity_targets: dict[str, torch.Tensor] = field(default_factory=dict)  # per column, [G] value index or -1


def _features_of(groups: _Groups, image_features: torch.Tensor, text_features: torch.Tensor,
                 entity_columns: dict[str, list[str]]) -> _Features:
    import torch

    keys: dict[str, int] = {}
    text_key = torch.tensor([keys.setdefault(text.strip().lower(), len(keys)) for text in groups.texts])
    targets = {}
    for column, values in entity_columns.items():
        index = {value: i for i, value in enumerate(values)}
        targets[column] = torch.tensor([index.get(labels.get(column), -1) for labels in groups.labels])
    return _Features(image_features, text_features, torch.tensor(groups.text_group), text_key, targets)


def _subset(features: _Features, group_ids: list[int]) -> _Features:
    import torch

    selected = torch.tensor(group_ids, dtype=torch.long)
    remap = torch.full((features.images.size(0),), -1, dtype=torch.long)
    remap[selected] = torch.arange(len(group_ids))
    keep = remap[features.text_group] >= 0
    return _Features(features.images[selected], features.texts[keep], remap[features.text_group[keep]],
                     features.text_key[keep], {c: t[selected] for c, t in features.entity_targets.items()})


def _batch_loss(module: AlignmentModel, features: _Features, batch: torch.Tensor, entity_texts: dict[str, torch.Tensor],
                settings: AlignHyperParams, captions: torch.Tensor) -> torch.Tensor:
    """InfoNCE between the images of ``batch`` and one caption of each, plus the label-entity loss."""
    import torch
    import torch.nn.functional as F

    from kgmm.nn.align import info_nce

    keys = features.text_key[captions]
    positives = (batch.unsqueeze(1) == batch.unsqueeze(0)) | (keys.unsqueeze(0) == keys.unsqueeze(1))
    output = module(features.images[batch], features.texts[captions])
    loss = info_nce(output.image, output.text, output.temperature, positives).loss
    if settings.entity_weight and entity_texts:
        entity_losses = []
        for column, texts in entity_texts.items():
            targets = features.entity_targets[column][batch]
            labelled = targets >= 0
            if not bool(labelled.any()):
                continue
            entities = module.embed_entity(texts)
            for side in (output.image, output.text):
                logits = side[labelled] @ entities.t() / output.temperature
                entity_losses.append(F.cross_entropy(logits, targets[labelled]))
        if entity_losses:
            loss = loss + settings.entity_weight * torch.stack(entity_losses).mean()
    return loss


def _validation_score(module: AlignmentModel, features: _Features, entity_texts: dict[str, torch.Tensor]) -> dict:
    import torch

    module.eval()
    with torch.no_grad():
        images = module.embed_image(features.images)
        texts = module.embed_text(features.texts)
        metrics = retrieval_ranks(images, texts, features.text_group).metrics()
        recalls = [metrics[side][f"R@{k}"] for side in ("image_to_text", "text_to_image") for k in RECALL_AT]
        accuracies = {}
        for column, entity_features in entity_texts.items():
            targets = features.entity_targets[column]
            labelled = targets >= 0
            if bool(labelled.any()):
                nearest = (images[labelled] @ module.embed_entity(entity_features).t()).argmax(1)
                accuracies[column] = round(float((nearest == targets[labelled]).double().mean()), 4)
    module.train()
    score = statistics.fmean(recalls)
    if accuracies:
        score = (score + statistics.fmean(accuracies.values())) / 2
    return {"score": round(score, 6), "image_to_text": metrics["image_to_text"],
            "text_to_image": metrics["text_to_image"], "label_top1": accuracies}


@dataclass
class _Fit:
    state: dict
    best_epoch: int
    validation: dict | None
    history: list[dict]


def _fit(module: AlignmentModel, train: _Features, valid: _Features | None, entity_texts: dict[str, torch.Tensor],
         settings: AlignHyperParams, *, epochs: int, seed: int, progress: bool, desc: str) -> _Fit:
    """Train the heads for ``epochs``; with ``valid``, keep the state of the best validation score."""
    import torch
    from tqdm.auto import tqdm

    module.image_head.set_input_statistics(train.images)
    module.text_head.set_input_statistics(train.texts)
    decay = [p for name, p in module.named_parameters() if name != "log_inverse_temperature"]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                   {"params": [module.log_inverse_temperature], "weight_decay": 0.0}], lr=settings.lr)
    generator = torch.Generator().manual_seed(seed)
    caption_lists = [[] for _ in range(train.images.size(0))]
    for text, group in enumerate(train.text_group.tolist()):
        caption_lists[group].append(text)
    best: dict | None = None
    best_state, best_epoch, history = copy.deepcopy(module.state_dict()), epochs, []
    module.train()
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        total, steps = 0.0, 0
        order = torch.randperm(train.images.size(0), generator=generator)
        draw = torch.rand(len(caption_lists), generator=generator)
        caption_of = torch.tensor([int(options[int(u * len(options))]) for u, options in zip(draw.tolist(), caption_lists, strict=True)])
        for batch in order.split(settings.batch_size):
            if len(batch) < 2:
                continue
            loss = _batch_loss(module, train, batch, entity_texts, settings, caption_of[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        if not math.isfinite(total):
            raise KgmmError(f"training diverged at epoch {epoch} (loss {total}); lower the learning rate (now {settings.lr})")
        if valid is not None:
            scored = _validation_score(module, valid, entity_texts)
            history.append({"epoch": epoch, "loss": round(total / max(steps, 1), 5), "score": scored["score"]})
            bar.set_postfix(loss=f"{total / max(steps, 1):.3f}", valid=f"{scored['score']:.3f}")
            if best is None or scored["score"] > best["score"]:
                best, best_state, best_epoch = scored, copy.deepcopy(module.state_dict()), epoch
    bar.close()
    if valid is None:
        best_state = copy.deepcopy(module.state_dict())
    module.load_state_dict(best_state)
    module.eval()
    return _Fit(best_state, best_epoch, best, history)


def train_align(
    pairs_path: str | Path,
    out_dir: str | Path,
    *,
    holdout: float = 0.2,
    seed: int = 0,
    epochs: int | None = None,
    vision_model: Any = None,
    text_model: Any = None,
    hparams: dict | None = None,
    cache_dir: Any = None,
    progress: bool = True,
) -> dict:
    """Train projection heads aligning images and texts (and label entities) of a pairs file, and save them.

    Args:
        pairs_path (Path): image–text pairs (see :func:`kgmm.sources.pairs.read_pairs`).
        out_dir (Path): the model directory to write (``config.json``, ``weights.safetensors``, ``metrics.json``).
        holdout (float, optional): share of images held out (never trained or selected on). (default: 0.2)
        seed (int, optional): seeds the split, the validation slice and training. (default: 0)
        epochs (int, optional): most epochs (default: :class:`AlignHyperParams`'s).
        vision_model (optional): None for EfficientNet-Lite0, a transformers folder, or a loaded encoder.
        text_model (optional): None for MiniLM, a transformers folder, or a loaded :class:`~kgmm.nn.text.TextEncoder`.
        hparams (dict, optional): overrides of :class:`AlignHyperParams`.
        cache_dir (optional): the image feature cache (see :func:`kgmm.nn.vision.encode_image_files`).
        progress (bool, optional): show progress bars. (default: True)

    Returns:
        dict: the split's sizes, the selected epoch, validation and held-out metrics, and the training time.
    """
    from kgmm.nn.align import AlignmentModel

    settings = _resolve_hparams({**(hparams or {}), "epochs": epochs})
    started = time.perf_counter()
    pairs_path = Path(pairs_path)
    pairs, split, train_groups = _read_split(pairs_path, holdout, seed)
    encoders = _FrozenEncoders(vision_model, text_model, cache_dir=cache_dir)
    prior_top_k = settings.prior_top_k if settings.label_prior and encoders.has_imagenet_head else None
    encoded = _encode_pairs(encoders, pairs, train_groups, settings, prior_top_k=prior_top_k, progress=progress)
    module_config = _module_config(encoded.everything, settings, prior_top_k)
    seed_everything(seed)
    choice = _choose_epochs(encoded, split.train, module_config, settings, seed=seed, progress=progress)
    seed_everything(seed)
    module = AlignmentModel(module_config)
    _fit(module, encoded.part(split.train), None, encoded.entity_texts, settings, epochs=choice.best_epoch, seed=seed,
         progress=progress, desc="align (refit on train)")
    seconds = round(time.perf_counter() - started, 2)
    holdout_metrics = _holdout_score(module, encoded, split.holdout)
    config = _model_config(module_config, settings, encoders, seed=seed, prior_top_k=prior_top_k,
                           text_model=text_model, entity_columns=encoded.entity_columns,
                           split_summary=_split_summary(pairs_path, holdout, seed, split, train_groups, choice))
    metrics = {"best_epoch": choice.best_epoch, "train_seconds": seconds, "validation": choice.validation,
               "holdout": holdout_metrics, "history": choice.history}
    _save(module, config, metrics, Path(out_dir))
    return {"out": str(out_dir), **config["split"],
            "entity_columns": {c: len(v) for c, v in encoded.entity_columns.items()},
            "best_epoch": choice.best_epoch, "train_seconds": seconds,
            "validation_metrics": _brief(choice.validation), "holdout_metrics": _brief(holdout_metrics)}


def _read_split(pairs_path: Path, holdout: float, seed: int) -> tuple[list[ImageTextPair], PairSplit, _Groups]:
    """Read the pairs and split them by image; return the pairs, the split and the training images' groups."""
    pairs = read_pairs(pairs_path)
    split = split_pairs(pairs, holdout=holdout, seed=seed)
    train_groups = _Groups.of(split.train)
    if len(train_groups) < 2:
        raise ValidationError(f"only {len(train_groups)} training image(s) after holding out {holdout:.0%}; "
                              "contrastive training needs at least 2: add pairs or lower --holdout")
    return pairs, split, train_groups


@dataclass
class _EncodedPairs:
    """Frozen features of every image and text of a pairs file (``position``: group name -> its index), and of
    the label entities of each label column."""

    everything: _Features
    position: dict[str, int]
    entity_columns: dict[str, list[str]]
    entity_texts: dict[str, torch.Tensor]

    def part(self, pairs: Sequence[ImageTextPair]) -> _Features:
        """The features of the images (and their texts) of ``pairs``."""
        return _subset(self.everything, [self.position[name] for name in _Groups.of(pairs).names])


def _encode_pairs(encoders: _FrozenEncoders, pairs: Sequence[ImageTextPair], train_groups: _Groups,
                  settings: AlignHyperParams, *, prior_top_k: int | None, progress: bool) -> _EncodedPairs:
    """Encode every image and text of ``pairs``, and the entities of the training images' label columns."""
    entity_columns = _entity_columns(train_groups, settings.max_label_values) if settings.entity_weight else {}
    all_groups = _Groups.of(pairs)
    image_features = _image_features(encoders, all_groups.images, prior_top_k=prior_top_k, progress=progress)
    text_features = encoders.encode_texts(all_groups.texts, progress=progress)
    entity_texts = {column: encoders.encode_texts([entity_text(value, column) for value in values])
                    for column, values in entity_columns.items()}
    everything = _features_of(all_groups, image_features, text_features, entity_columns)
    position = {name: i for i, name in enumerate(all_groups.names)}
    return _EncodedPairs(everything, position, entity_columns, entity_texts)


def _module_config(features: _Features, settings: AlignHyperParams, prior_top_k: int | None) -> AlignmentConfig:
    """The heads' :class:`~kgmm.nn.align.AlignmentConfig` for these feature widths (the image head skips from the
    label prior, the last text-width columns of the image features, when there is one)."""
    from kgmm.nn.align import AlignmentConfig

    image_dim, text_dim = features.images.size(1), features.texts.size(1)
    return AlignmentConfig(
        image_channels=image_dim, text_channels=text_dim, out_channels=text_dim,
        hidden_channels=settings.hidden_channels, dropout=settings.dropout,
        image_skip_from=image_dim - text_dim if prior_top_k else None, text_skip=True,
        temperature=settings.temperature,
    )


@dataclass
class _EpochChoice:
    """How many epochs to train for and, when they were chosen on a validation slice of the training images,
    its score and per-epoch history (``validation_images``: the slice's size, 0 without one)."""

    best_epoch: int
    validation: dict | None = None
    history: list[dict] = field(default_factory=list)
    validation_images: int = 0


def _choose_epochs(encoded: _EncodedPairs, train_pairs: Sequence[ImageTextPair], module_config: AlignmentConfig,
                   settings: AlignHyperParams, *, seed: int, progress: bool) -> _EpochChoice:
    """Train fresh heads on the training images less a validation slice and choose the epoch best on the slice;
    all the epochs when the slice has fewer than ``MIN_VALIDATION_IMAGES`` images (or there is none)."""
    from kgmm.nn.align import AlignmentModel

    if not settings.val_fraction:
        return _EpochChoice(settings.epochs)
    inner = split_pairs(train_pairs, holdout=settings.val_fraction, seed=seed + 1)
    choice = _EpochChoice(settings.epochs, validation_images=len({p.group for p in inner.holdout}))
    if choice.validation_images < MIN_VALIDATION_IMAGES or len({p.group for p in inner.train}) < 2:
        return choice
    selection = _fit(AlignmentModel(module_config), encoded.part(inner.train), encoded.part(inner.holdout),
                     encoded.entity_texts, settings, epochs=settings.epochs, seed=seed, progress=progress,
                     desc="align (select epochs)")
    return replace(choice, best_epoch=selection.best_epoch, validation=selection.validation,
                   history=selection.history)


def _holdout_score(module: AlignmentModel, encoded: _EncodedPairs,
                   holdout_pairs: Sequence[ImageTextPair]) -> dict | None:
    """The validation score and metrics of ``module`` on the held-out images; None when there are none."""
    if not holdout_pairs:
        return None
    scored = _validation_score(module, encoded.part(holdout_pairs), encoded.entity_texts)
    module.eval()
    return scored


def _split_summary(pairs_path: Path, holdout: float, seed: int, split: PairSplit, train_groups: _Groups,
                   choice: _EpochChoice) -> dict:
    """How the pairs were split: the settings, and the images and pairs on each side."""
    return {"pairs_file": str(pairs_path), "holdout": holdout, "seed": seed,
            "train_images": len(train_groups), "holdout_images": len({p.group for p in split.holdout}),
            "train_pairs": len(split.train), "holdout_pairs": len(split.holdout),
            "validation_images": choice.validation_images}


def _model_config(module_config: AlignmentConfig, settings: AlignHyperParams, encoders: _FrozenEncoders, *, seed: int,
                  prior_top_k: int | None, text_model: Any, entity_columns: dict[str, list[str]],
                  split_summary: dict) -> dict:
    """What a model's ``config.json`` holds: the heads, settings, split, encoders and label columns."""
    return {
        "kind": MODEL_KIND,
        "format_version": FORMAT_VERSION,
        "module": module_config.to_dict(),
        "hparams": asdict(settings),
        "seed": seed,
        "split": split_summary,
        "vision": {"model": encoders.vision_name, "fingerprint": encoders.vision_fingerprint(),
                   "prior_top_k": prior_top_k},
        "text": {"model": _text_model_name(text_model), "fingerprint": encoders.text_fingerprint()},
        "entity_columns": entity_columns,
        "training": "symmetric InfoNCE (one caption per image per epoch; same image or same wording = positive) + "
                    "cross-entropy of images and texts towards their label entities; epochs selected on a "
                    "validation slice of the training images, then refit on all training images",
    }


def _text_model_name(text_model: Any) -> str | None:
    """How the config names a text encoder: None for the default MiniLM, else its folder."""
    from kgmm.nn.text import default_text_encoder_path

    if text_model is None:
        return None
    path = Path(getattr(text_model, "path", text_model))
    return None if path == default_text_encoder_path() else str(path)


def _brief(scored: dict | None) -> dict | None:
    if scored is None:
        return None
    brief = {f"i2t_R@{k}": scored["image_to_text"][f"R@{k}"] for k in RECALL_AT}
    brief.update({f"t2i_R@{k}": scored["text_to_image"][f"R@{k}"] for k in RECALL_AT})
    brief.update({f"{column}_top1": value for column, value in scored["label_top1"].items()})
    return brief


def _save(module: AlignmentModel, config: dict, metrics: dict, out_dir: Path) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous().cpu() for key, value in module.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE))
    (out_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def load_align_model(model_dir: str | Path, *, vision_model: Any = None, text_model: Any = None,
                     cache_dir: Any = None) -> AlignedModel:
    """Load a model written by :func:`train_align`.

    Args:
        model_dir (Path): the model directory.
        vision_model (optional): a loaded vision encoder to use instead of the one named in the config
            (it must be the same network). (default: the config's)
        text_model (optional): likewise for the text encoder.
        cache_dir (optional): the image feature cache.

    Returns:
        AlignedModel: with ``embed_image_files(paths)``, ``embed_texts(texts)``, ``embed_entities(names, types)``
        (each ``[n, dim]``, L2-normalised, one joint space), ``dim`` and ``fingerprint``.

    Raises:
        SourceError: the directory is missing, is not an alignment model, or its files are damaged.
    """
    from kgmm.nn.align import AlignmentConfig, AlignmentModel

    model_dir = Path(model_dir)
    fix = f"train one with `kgmm train align --pairs FILE --out {model_dir}`"
    config_path = model_dir / CONFIG_FILE
    config = read_model_config(model_dir, kind=MODEL_KIND, max_format=FORMAT_VERSION, what="an alignment model", fix=fix)
    try:
        module = AlignmentModel(AlignmentConfig.from_dict(config["module"]))
    except (KeyError, TypeError, ValidationError) as e:
        raise SourceError(f"the model config is damaged ({e}); {fix}", path=str(config_path)) from e
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise SourceError(f"no {WEIGHTS_FILE} (interrupted training?); {fix}", path=str(model_dir))
    try:
        from safetensors.torch import load_file

        module.load_state_dict(load_file(str(weights)))
    except Exception as e:  # safetensors and shape errors have no common base
        raise SourceError(f"corrupt or mismatched weights ({type(e).__name__}: {e}); {fix}", path=str(weights)) from e
    vision = vision_model if vision_model is not None else _configured_vision(config)
    text = text_model if text_model is not None else config["text"].get("model")
    encoders = _FrozenEncoders(vision, text, cache_dir=cache_dir)
    digest = hashlib.sha1(weights.read_bytes())
    digest.update(f"{config['vision']['fingerprint']}:{config['text']['fingerprint']}".encode())
    return AlignedModel(module, config, encoders, "align-" + digest.hexdigest()[:12])


def _configured_vision(config: dict) -> str | None:
    name = config["vision"].get("model")
    return None if name in (None, DEFAULT_VISION_MODEL) else name


def evaluate_align(
    model_dir: str | Path | None,
    pairs_path: str | Path,
    *,
    split: str = "holdout",
    candidates: int | None = None,
    label: str | None = None,
    baseline: str | None = None,
    holdout: float | None = None,
    seed: int | None = None,
    vision_model: Any = None,
    text_model: Any = None,
    cache_dir: Any = None,
    progress: bool = False,
) -> dict:
    """Cross-modal retrieval metrics (and optionally label accuracy) of a trained model or the baseline.

    Args:
        model_dir (Path or None): a directory from :func:`train_align`; None only with ``baseline``.
        pairs_path (Path): the pairs to evaluate.
        split (str, optional): ``holdout`` (the images the model never saw), ``train`` or ``all``; the split
            is the model's (``holdout`` share and ``seed`` from its config). (default: ``holdout``)
        candidates (int, optional): rank each query among its own item and ``candidates - 1`` others drawn
            with the seed (all when fewer exist; ``pool_size`` says how many). (default: None, all)
        label (str, optional): a label column (e.g. ``articleType``): top-1 accuracy of the nearest entity
            ``"value (column)"`` among the column's values in the pairs file and the model's training labels.
        baseline (str, optional): ``imagenet-labels`` scores the zero-training baseline instead of the model
            (on the model's split when ``model_dir`` is given).
        holdout (float, optional): the held-out share when there is no model (default 0.2), or to override.
        seed (int, optional): the split seed when there is no model (default 0), or to override.
        vision_model, text_model, cache_dir (optional): encoders and cache, as in :func:`load_align_model`.
        progress (bool, optional): show progress while encoding. (default: False)

    Returns:
        dict: ``image_to_text`` and ``text_to_image`` (R@1/5/10, median_rank, mean_rank, queries),
        ``pool_size``, ``label`` accuracy when asked, and the settings used.
    """
    import torch

    _check_evaluation_settings(split, baseline, model_dir, candidates)
    model = load_align_model(model_dir, vision_model=vision_model, text_model=text_model,
                             cache_dir=cache_dir) if model_dir is not None else None
    split_settings = model.config["split"] if model is not None else {}
    holdout = holdout if holdout is not None else split_settings.get("holdout", 0.2)
    seed = seed if seed is not None else split_settings.get("seed", 0)
    embedder = _baseline(model, vision_model, text_model, cache_dir) if baseline is not None else model
    pairs = read_pairs(pairs_path)
    groups = _Groups.of(_split_part(pairs, pairs_path, split, holdout=holdout, seed=seed))
    image_emb = embedder.embed_image_files(groups.images, progress=progress)
    text_emb = embedder.embed_texts(groups.texts, progress=progress)
    ranks = retrieval_ranks(image_emb, text_emb, torch.tensor(groups.text_group), candidates=candidates, seed=seed)
    result = {
        "model": str(model_dir) if baseline is None else f"baseline:{baseline}",
        "fingerprint": embedder.fingerprint,
        "pairs_file": str(pairs_path),
        "split": split, "holdout": holdout, "seed": seed,
        "images": len(groups), "texts": len(groups.texts),
        **ranks.metrics(),
    }
    if label is not None:
        result["label"] = _label_top1(embedder, model, pairs, pairs_path, label, groups, image_emb)
    return result


def _check_evaluation_settings(split: str, baseline: str | None, model_dir: str | Path | None,
                               candidates: int | None) -> None:
    """Raise a :class:`ValidationError` for a setting :func:`evaluate_align` cannot use."""
    if split not in SPLITS:
        raise ValidationError(f"no split {split!r}; available: {', '.join(SPLITS)}")
    if baseline is not None and baseline not in BASELINES:
        raise ValidationError(f"no baseline {baseline!r}; available: {', '.join(BASELINES)}")
    if model_dir is None and baseline is None:
        raise ValidationError("give a model directory (--model) or a baseline (--baseline imagenet-labels)")
    if candidates is not None and candidates < 2:
        raise ValidationError(f"candidates must be at least 2, got {candidates}")


def _baseline(model: AlignedModel | None, vision_model: Any, text_model: Any, cache_dir: Any) -> ImageNetLabelBaseline:
    """The ImageNet-label baseline, on the model's encoders and prior size when there is a model."""
    encoders = model.encoders if model is not None else _FrozenEncoders(vision_model, text_model, cache_dir=cache_dir)
    top_k = (model.config["hparams"].get("prior_top_k", 5) if model is not None else 5)
    return ImageNetLabelBaseline(encoders, top_k=top_k)


def _split_part(pairs: list[ImageTextPair], pairs_path: str | Path, split: str, *, holdout: float,
                seed: int) -> list[ImageTextPair]:
    """The pairs of ``split`` (``holdout``, ``train`` or ``all``), which must not be empty."""
    parts = split_pairs(pairs, holdout=holdout, seed=seed)
    chosen = {"holdout": parts.holdout, "train": parts.train, "all": pairs}[split]
    if not chosen:
        raise ValidationError(f"the {split} split of {pairs_path} is empty (holdout={holdout}, seed={seed}); "
                              "use --split all or another file")
    return chosen


def _label_top1(embedder: Any, model: AlignedModel | None, pairs: Sequence[ImageTextPair], pairs_path: str | Path,
                label: str, groups: _Groups, image_emb: torch.Tensor) -> dict:
    """Top-1 accuracy of the ``label`` column by the entity nearest each image, among the column's values in the
    pairs and the model's training labels."""
    values = sorted({p.labels[label] for p in pairs if label in p.labels}
                    | set(model.entity_columns.get(label, []) if model is not None else []))
    if not values:
        found = sorted({key for p in pairs for key in p.labels})
        raise ValidationError(f"no label {label!r} in {pairs_path}; labels there: {', '.join(found) or 'none'}")
    entity_emb = embedder.embed_entities(values, [label] * len(values))
    return {"column": label, **_label_accuracy(
        image_emb, [labels.get(label) for labels in groups.labels], entity_emb, values)}
