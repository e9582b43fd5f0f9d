"""Fusion benchmark: a fashion product's article type from its photo, its title and the catalogue graph.

Every fusion strategy of :mod:`kgmm.nn.fusion` and every modality alone are trained with the same budget on the
same products and scored on the same held-out products (top-1 accuracy and macro-F1).

The three modalities of a photographed product (``products_train.csv``, image ``images/<id>.jpg``):

- ``image``: EfficientNet-Lite0 pooled features of the photo (1280-d, cached by content).
- ``title``: the all-MiniLM-L6-v2 embedding of ``productDisplayName`` (384-d).
- ``graph``: label propagation over a catalogue knowledge graph, as one token per relation.

Catalogue training (:func:`kgmm.tasks.fusion.sample_catalogue`): besides the photographed training products, every model with a
title or graph also trains on catalogue rows (at most ``catalogue_per_type`` per article type, default 60: about
3,200 rows), which have no photo: their ``image`` is masked as missing (the fusion modules' ``present`` mask), so
``image only`` cannot use them. A photographed product's catalogue row is never one of them. Their graph tokens
are leave-one-out: a catalogue row's own labels are taken out of its attribute entities' counts, degrees and the
prior, which gives exactly the tokens it would get as a query product (the tests check this). Each training step
sees every photographed training product and a batch of catalogue rows; scores are on the held-out photographed
products only.

The catalogue graph, its features and the splits are :mod:`kgmm.tasks.fusion`'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from kgmm.tasks.fusion import (
    catalogue_graph,
    encode_titles,
    graph_tokens,
    read_products,
    sample_catalogue,
    stratified_folds,
    stratified_split,
)
from kgmm.tasks.metrics import macro_f1

DEFAULT_DATA = Path("../shared/data/fashion")
DEFAULT_EPOCHS = 150
DEFAULT_CATALOGUE_PER_TYPE = 60
CATALOGUE_BATCH = 256
MODALITY_DROPOUT = 0.5
AUXILIARY_WEIGHT = 1.0
LEARNING_RATE = 5e-3
DROPOUT = 0.2


def _train_and_predict(strategy: str, features: dict, masks: dict, present: dict, targets, train: list[int],
                       held_out: list[int], num_classes: int, *, epochs: int, seed: int,
                       catalogue: Sequence[int] = (), catalogue_batch: int = CATALOGUE_BATCH,
                       modality_dropout: float = MODALITY_DROPOUT, auxiliary_weight: float = AUXILIARY_WEIGHT,
                       lr: float = LEARNING_RATE, dropout: float = DROPOUT):
    """Train one fusion model (AdamW, one-cycle schedule) and predict ``held_out``.

    Every step sees all of ``train`` and the next ``catalogue_batch`` rows of ``catalogue`` (reshuffled once all
    were seen); without catalogue rows, that is full-batch training on ``train``.

    Args:
        strategy (str): a fusion strategy.
        features, masks, present (dict): modality -> features ``[N, ...]``, token masks ``[N, T]`` and whether each
            row has it ``[N]`` (every modality of ``features`` must be in ``present``).
        targets (Tensor): ``[N]`` class indices.
        train, held_out (list of int): photographed products' rows to train on and to predict.
        num_classes (int): number of classes.
        epochs (int): training steps.
        seed (int): initialisation and the catalogue batches.
        catalogue (list of int, optional): catalogue rows to train on as well (default none).
        catalogue_batch (int, optional): catalogue rows per step (default 256).

    Returns:
        ``(predicted, modality_weights, seconds)``: class indices, ``[H, M]`` weights or None, training time.
    """
    import torch

    from kgmm.nn.fusion import build_fusion

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    dims = {name: int(value.size(-1)) for name, value in features.items()}
    model = build_fusion(strategy, dims, num_classes, hidden_channels=128, dropout=dropout,
                         modality_dropout=modality_dropout if len(dims) > 1 else 0.0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=epochs)
    started = time.perf_counter()

    def batch(index):
        return ({name: value[index] for name, value in features.items()},
                {name: mask[index] for name, mask in masks.items() if name in features},
                {name: present[name][index] for name in features})

    train_index = torch.as_tensor(train, dtype=torch.long)
    catalogue_index = torch.as_tensor(list(catalogue), dtype=torch.long)
    take = min(catalogue_batch, catalogue_index.numel())
    queue = catalogue_index[:0]
    model.train()
    for _ in range(epochs):
        index = train_index
        if take:
            if queue.numel() < take:
                queue = torch.cat([queue, catalogue_index[torch.randperm(catalogue_index.numel(), generator=generator)]])
            index, queue = torch.cat([train_index, queue[:take]]), queue[take:]
        inputs, input_masks, input_present = batch(index)
        step_targets = targets[index]
        optimiser.zero_grad()
        output = model(inputs, input_masks, input_present)
        loss = torch.nn.functional.cross_entropy(output.logits, step_targets, label_smoothing=0.1)
        if auxiliary_weight and output.modality_logits is not None:
            # Each modality's own head also learns the task where the row has it (a catalogue row has no photo),
            # so the late combination has experts to weigh.
            has = torch.stack([input_present[name] for name in features], dim=1)
            loss = loss + auxiliary_weight * torch.nn.functional.cross_entropy(
                output.modality_logits[has], step_targets.unsqueeze(1).expand_as(has)[has], label_smoothing=0.1)
        loss.backward()
        optimiser.step()
        schedule.step()
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        output = model(*batch(torch.as_tensor(held_out, dtype=torch.long)))
    return output.logits.argmax(-1).tolist(), output.modality_weights, seconds


def _cross_validated(strategy: str, features: dict, masks: dict, present: dict, targets, splits, num_classes: int,
                     *, epochs: int, seed: int, catalogue: Sequence[int] = (),
                     catalogue_batch: int = CATALOGUE_BATCH) -> dict:
    """Train and predict once per split; score the held-out predictions of all splits together.

    Each split trains on the catalogue rows of the article types its training products have.
    """
    truth, predicted, fold_accuracy, weights, seconds = [], [], [], [], 0.0
    for train, held_out in splits:
        train_classes = set(targets[train].tolist())
        fold_catalogue = [row for row in catalogue if int(targets[row]) in train_classes]
        guesses, modality_weights, fold_seconds = _train_and_predict(
            strategy, features, masks, present, targets, train, held_out, num_classes, epochs=epochs, seed=seed,
            catalogue=fold_catalogue, catalogue_batch=catalogue_batch)
        actual = targets[held_out].tolist()
        truth += actual
        predicted += guesses
        fold_accuracy.append(round(sum(g == a for g, a in zip(guesses, actual, strict=True)) / max(1, len(actual)), 4))
        if modality_weights is not None:
            weights.append(modality_weights)
        seconds += fold_seconds
    row = {
        "accuracy": round(sum(g == a for g, a in zip(predicted, truth, strict=True)) / max(1, len(truth)), 4),
        "macro_f1": round(macro_f1(truth, predicted), 4),
        "fold_accuracy": fold_accuracy,
        "train_s": round(seconds, 2),
    }
    if weights:
        import torch

        mean = torch.cat(weights).mean(0)
        row["modality_weights"] = {name: round(float(w), 3) for name, w in zip(features, mean, strict=True)}
    return row


def _encode_modalities(data_dir: Path, products: list[dict[str, str]], catalogue: list[dict[str, str]],
                       training_rows: list[dict[str, str]], image_encoder, text_encoder,
                       progress: bool) -> tuple[dict, dict, dict, dict]:
    """Return the modalities of ``products`` then ``training_rows`` (catalogue rows, without a photo): features,
    token masks, whether each row has each modality, and what was built (sizes, seconds)."""
    import torch

    from kgmm.nn.vision import encode_image_files

    rows = [*products, *training_rows]
    started = time.perf_counter()
    paths = [data_dir / (row.get("image") or f"images/{row['id']}.jpg") for row in products]
    photos = encode_image_files(paths, image_encoder, progress=progress).float()
    image = torch.cat([photos, photos.new_zeros(len(training_rows), photos.size(1))])
    image_s = time.perf_counter() - started

    started = time.perf_counter()
    title = encode_titles([row.get("productDisplayName") or "" for row in rows], text_encoder, progress)
    title_s = time.perf_counter() - started

    started = time.perf_counter()
    graph, product_node = catalogue_graph(catalogue, products)
    tokens, mask, relations = graph_tokens(graph, [product_node[row["id"].strip()] for row in rows])
    graph_s = time.perf_counter() - started
    product_ids = {row["id"].strip() for row in products}
    withheld = sum(1 for row in catalogue if row["id"].strip() in product_ids)
    about = {
        "graph": {"nodes": int(graph.num_nodes), "edges": int(graph.edge_index.size(1)),
                  "catalogue_products": len(catalogue), "labels_withheld_for": len(products),
                  "withheld_catalogue_rows": withheld, "relations": relations, "token_dim": int(tokens.size(-1))},
        "seconds": {"image": round(image_s, 2), "title": round(title_s, 2), "graph": round(graph_s, 2)},
    }
    features = {"image": image, "title": title, "graph": tokens}
    masks = {"graph": mask}
    present = {"image": torch.arange(len(rows)) < len(products), "title": torch.ones(len(rows), dtype=torch.bool),
               "graph": mask.any(dim=1)}
    return features, masks, present, about | {"dims": {name: int(value.size(-1)) for name, value in features.items()}}


def fusion_benchmark(
    data_dir: str | Path = DEFAULT_DATA,
    *,
    seed: int = 0,
    holdout: float = 0.25,
    cross_validate: bool = True,
    epochs: int = DEFAULT_EPOCHS,
    catalogue_per_type: int = DEFAULT_CATALOGUE_PER_TYPE,
    catalogue_batch: int = CATALOGUE_BATCH,
    out_png: str | Path | None = None,
    strategies: Sequence[str] | None = None,
    progress: bool = False,
    image_encoder=None,
    text_encoder=None,
) -> dict:
    """Compare every fusion strategy with every single modality on predicting a product's article type.

    Args:
        data_dir (str or Path): the fashion folder (``catalogue.csv``, ``products_train.csv``, ``images/``).
        seed (int, optional): the split and the models' initialisation (default 0).
        holdout (float, optional): share of each article type's products held out (default 0.25).
        cross_validate (bool, optional): stratified k-fold with ``k = round(1 / holdout)`` folds, so every product
            of an article type with two or more products is held out once and scores pool over folds (default
            True: 105 held-out products score one model in 1 % steps, too coarse to rank strategies); False: one
            split.
        epochs (int, optional): training steps of every model (default 150); each step sees every training
            product and ``catalogue_batch`` catalogue rows.
        catalogue_per_type (int, optional): catalogue rows (no photo, never one of a photographed product) that
            train every model with a modality they have (title, graph; the image is masked as missing), at most
            this many per article type, drawn with ``seed`` (default 60; 0: photographed products only). Their
            graph tokens leave their own labels out (:func:`graph_tokens`); scores stay on photographed products.
        catalogue_batch (int, optional): catalogue rows per training step (default 256).
        out_png (str or Path, optional): write a bar chart of held-out accuracy and macro-F1 here.
        strategies (list of str, optional): fusion strategies to compare (default: all registered).
        progress (bool, optional): show progress while encoding and training (default False).
        image_encoder (optional): what :func:`kgmm.nn.vision.encode_image_files` takes (default EfficientNet-Lite0).
        text_encoder (optional): an object with ``encode(texts) -> [n, d]`` (default all-MiniLM-L6-v2).

    Returns:
        dict with the split sizes, the catalogue rows trained on (``catalogue_training``), the graph's make-up,
        ``results`` (one row per single modality and per strategy: ``name``, ``kind``, ``modalities``,
        ``catalogue_rows`` it could train on, ``accuracy`` and ``macro_f1`` over every held-out product,
        ``fold_accuracy``, ``train_s``, and mean ``modality_weights`` where the strategy has them), ``best_single``,
        ``best_fusion``, ``fusion_beats_single``, ``plot`` and ``seconds``.

    Raises:
        ValidationError: for an unknown strategy, a bad ``holdout``, ``epochs``, ``catalogue_per_type`` or
            ``catalogue_batch``, or a folder without the files.
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    strategies = _check_options(data_dir, holdout=holdout, epochs=epochs, catalogue_per_type=catalogue_per_type,
                                catalogue_batch=catalogue_batch, strategies=strategies)
    products, catalogue, labels, classes, training_rows, targets = _read_targets(data_dir, catalogue_per_type, seed)
    splits = _splits(labels, holdout, cross_validate, seed)
    features, masks, present, about = _encode_modalities(data_dir, products, catalogue, training_rows, image_encoder,
                                                         text_encoder, progress)
    catalogue_positions = range(len(products), len(products) + len(training_rows))
    results = _train_every_model(features, masks, present, targets, splits, len(classes), strategies,
                                 catalogue_positions, epochs=epochs, seed=seed, catalogue_batch=catalogue_batch,
                                 progress=progress)
    result = {
        "task": "fashion articleType from photo + title + catalogue graph",
        "data": str(data_dir), "products": len(products), "classes": len(classes), "folds": len(splits),
        "train": [len(train) for train, _ in splits], "held_out": sum(len(held_out) for _, held_out in splits),
        "seed": seed, "holdout": holdout, "epochs": epochs,
        "catalogue_training": {"per_type": catalogue_per_type, "rows": len(training_rows), "batch": catalogue_batch},
        **about,
        "results": results,
        **_best(results),
        "plot": None,
    }
    if out_png is not None:
        result["plot"] = str(plot_results(results, out_png, title=f"article type: {result['held_out']} held-out "
                                                                   f"products, {len(splits)} fold(s), seed {seed}"))
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def _check_options(data_dir: Path, *, holdout: float, epochs: int, catalogue_per_type: int, catalogue_batch: int,
                   strategies: Sequence[str] | None) -> list[str]:
    """Check the folder and the options; return the strategies to compare (default: all registered)."""
    from kgmm.errors import ValidationError
    from kgmm.nn.fusion import FUSION_STRATEGIES

    for name in ("catalogue.csv", "products_train.csv"):
        if not (data_dir / name).is_file():
            raise ValidationError(f"no {name} in {data_dir}; pass the fashion folder (catalogue.csv, "
                                  "products_train.csv, images/)")
    if not 0.0 < holdout < 1.0:
        raise ValidationError(f"holdout must be in (0, 1), got {holdout!r}")
    if epochs < 1:
        raise ValidationError(f"epochs must be >= 1, got {epochs!r}")
    if catalogue_per_type < 0:
        raise ValidationError(f"catalogue_per_type must be >= 0 (0: no catalogue rows), got {catalogue_per_type!r}")
    if catalogue_batch < 1:
        raise ValidationError(f"catalogue_batch must be >= 1, got {catalogue_batch!r}")
    strategies = list(strategies) if strategies is not None else list(FUSION_STRATEGIES)
    unknown = [name for name in strategies if name not in FUSION_STRATEGIES]
    if unknown:
        raise ValidationError(f"no fusion strategy {unknown[0]!r}; available: {', '.join(FUSION_STRATEGIES)}")
    return strategies


def _read_targets(data_dir: Path, catalogue_per_type: int, seed: int):
    """Read the photographed products and the catalogue, pick the catalogue rows that train beside them and
    return ``(products, catalogue, labels, classes, training_rows, targets)``: ``targets`` holds the class of
    each product, then of each training row."""
    import torch

    products = read_products(data_dir / "products_train.csv")
    catalogue = read_products(data_dir / "catalogue.csv")
    labels = [row["articleType"].strip() for row in products]
    classes = sorted(set(labels))
    training_rows = sample_catalogue(catalogue, products, classes, catalogue_per_type, seed)
    targets = torch.tensor([classes.index(label) for label in labels]
                           + [classes.index(row["articleType"].strip()) for row in training_rows])
    return products, catalogue, labels, classes, training_rows, targets


def _splits(labels: Sequence[str], holdout: float, cross_validate: bool, seed: int) -> list:
    """Stratified folds (``round(1 / holdout)``, at least 2) or, without ``cross_validate``, one stratified split."""
    if cross_validate:
        return stratified_folds(labels, max(2, round(1 / holdout)), seed)
    return [stratified_split(labels, holdout, seed)]


def _train_every_model(features: dict, masks: dict, present: dict, targets, splits, num_classes: int,
                       strategies: Sequence[str], catalogue_positions: Sequence[int], *, epochs: int, seed: int,
                       catalogue_batch: int, progress: bool) -> list[dict]:
    """Cross-validate each modality alone (``early-concat`` of one) and then each strategy over all of them, on at
    most 2 torch threads; one result row each, trained on the catalogue rows that have one of its modalities."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    runs = [(f"{name} only", "single", "early-concat", [name]) for name in features]
    runs += [(name, "fusion", name, list(features)) for name in strategies]
    results = []
    try:
        for display, kind, strategy, modalities in runs:
            if progress:
                print(f"training {display} ({len(splits)} fold(s)) ...", flush=True)
            subset = {name: features[name] for name in modalities}
            usable = [row for row in catalogue_positions if any(present[name][row] for name in modalities)]
            row = {"name": display, "kind": kind, "strategy": strategy, "modalities": modalities,
                   "catalogue_rows": len(usable)}
            row |= _cross_validated(strategy, subset, masks, present, targets, splits, num_classes, epochs=epochs,
                                    seed=seed, catalogue=usable, catalogue_batch=catalogue_batch)
            results.append(row)
    finally:
        torch.set_num_threads(threads)
    return results


def _best(results: Sequence[dict]) -> dict:
    """The best single modality and the best strategy (by accuracy, then macro-F1), and whether fusion wins."""
    singles = [row for row in results if row["kind"] == "single"]
    fusions = [row for row in results if row["kind"] == "fusion"]
    best_single = max(singles, key=lambda row: (row["accuracy"], row["macro_f1"]))
    best_fusion = max(fusions, key=lambda row: (row["accuracy"], row["macro_f1"])) if fusions else None
    return {
        "best_single": {key: best_single[key] for key in ("name", "accuracy", "macro_f1")},
        "best_fusion": {key: best_fusion[key] for key in ("name", "accuracy", "macro_f1")} if best_fusion else None,
        "fusion_beats_single": bool(best_fusion and best_fusion["accuracy"] > best_single["accuracy"]),
    }


def plot_results(results: Sequence[dict], out_png: str | Path, *, title: str = "") -> Path:
    """Write a bar chart of held-out accuracy and macro-F1 per model to ``out_png`` (PNG); return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    names = [row["name"] for row in results]
    width = 0.38
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(names)), 4.2))
    positions = range(len(names))
    for offset, key, label in ((-width / 2, "accuracy", "accuracy"), (width / 2, "macro_f1", "macro-F1")):
        values = [row[key] for row in results]
        bars = axes.bar([p + offset for p in positions], values, width, label=label)
        axes.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=2)
    singles = sum(1 for row in results if row["kind"] == "single")
    if 0 < singles < len(names):
        axes.axvline(singles - 0.5, color="grey", linestyle=":", linewidth=1)
    axes.set_xticks(list(positions), names, rotation=25, ha="right")
    axes.set_ylim(0, 1.18)
    axes.set_ylabel("held-out score")
    axes.set_title(title or "fusion benchmark")
    axes.legend(loc="upper right", ncols=2, fontsize=8)
    figure.tight_layout()
    figure.savefig(out_png, dpi=120, format="png")
    plt.close(figure)
    return out_png
