"""Photo QA benchmark: usage, season and article-type questions about unseen product photos, answered by the
three models of :mod:`kgmm.tasks.photo_qa` (``image+graph``, ``image removed``, ``graph removed``), so what each
modality adds is measured.

``seed_mix``, the head weight and the image-removed prior are chosen by stratified cross-validation over the
training photos (each fold's graph seeds never reach the fold's validation products, as they never reach the
held-out ones); the held-out photos are scored once, with the chosen settings, by models refit on every training
photo.

No leakage: the held-out products (``holdout`` of each article type, drawn with ``seed``) are absent from the
graph (their ``catalogue.csv`` rows are skipped, so they have no node and no edge) and from every training step
and choice. A training photo's own product is never among its seeds. The answer vocabulary is the set of entities
that answer some training question (the same for every variant); a held-out answer outside it counts as wrong.

Also reported, as a ``reference``: the photo's nearest training photos voting with their labels read from
``products_train.csv`` (no graph): with ``seed_mix`` 1 the graph route reads the same labels through the graph,
so this row shows how much of the graph's gain is that lookup.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kgmm.errors import ValidationError
from kgmm.tasks.fusion import stratified_folds, stratified_split
from kgmm.tasks.photo_qa import (
    DEFAULT_GNN_EPOCHS,
    DEFAULT_HEAD_EPOCHS,
    DEFAULT_NEIGHBOURS,
    DEFAULT_STEPS,
    DEFAULT_TEMPERATURE,
    QUESTION_TYPES,
    Examples,
    build_context,
    combine,
    held_out_graph,
    read_fashion_folder,
    run_fold,
)

DEFAULT_DATA = Path("../shared/data/fashion")
DEFAULT_FOLDS = 4
SEED_MIXES = (1.0, 0.75, 0.5, 0.25, 0.0)  # share of the seeds from similar photos; the rest from similar titles
HEAD_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)  # weight of the image head's log-probabilities in image+graph
VARIANTS = ("image+graph", "image removed", "graph removed")
REFERENCE = "image kNN, no graph"


def photo_qa_benchmark(
    data_dir: str | Path = DEFAULT_DATA,
    *,
    seed: int = 0,
    holdout: float = 0.25,
    folds: int = DEFAULT_FOLDS,
    neighbours: int = DEFAULT_NEIGHBOURS,
    temperature: float = DEFAULT_TEMPERATURE,
    steps: int = DEFAULT_STEPS,
    gnn_epochs: int = DEFAULT_GNN_EPOCHS,
    head_epochs: int = DEFAULT_HEAD_EPOCHS,
    align_epochs: int | None = None,
    seed_mixes: Sequence[float] = SEED_MIXES,
    head_weights: Sequence[float] = HEAD_WEIGHTS,
    progress: bool = False,
    image_encoder=None,
    text_encoder=None,
) -> dict:
    """Answer usage / season / article-type questions about unseen product photos with image+graph, image removed
    and graph removed models, and report held-out accuracy per question type (see the module docstring).

    Args:
        data_dir (str or Path): the fashion folder (``catalogue.csv``, ``products_train.csv``, ``images/``).
        seed (int, optional): the held-out split, the folds and the models' initialisation (default 0).
        holdout (float, optional): share of each article type's photographed products held out (default 0.25).
        folds (int, optional): cross-validation folds over the training photos that choose ``seed_mix``, the head
            weight and the image-removed prior (default 4; at least 2).
        neighbours (int, optional): seeds per match (similar photos, similar titles) of a photo (default 10).
        temperature (float, optional): softmax temperature of the seed weights over cosine similarities (default
            0.05).
        steps (int, optional): GraphQA propagation steps, 1 or 2 (default 1: the attributes are one hop from a
            product).
        gnn_epochs (int, optional): passes over the training questions for each GraphQA (default 4).
        head_epochs (int, optional): passes over the training photos for the image head (default 120).
        align_epochs (int, optional): most epochs of the image-title alignment (default: ``train_align``'s).
        seed_mixes (list of float, optional): shares of photo-matched seeds to choose from (default 1, 0.75, 0.5,
            0.25, 0; only 1: no alignment is trained).
        head_weights (list of float, optional): weights of the image head in image+graph to choose from (default
            0, 0.25, 0.5, 1, 2, 4).
        progress (bool, optional): print what runs (default False).
        image_encoder (optional): what :func:`kgmm.nn.vision.encode_image_files` takes (default EfficientNet-Lite0).
        text_encoder (optional): a :class:`kgmm.nn.text.TextEncoder` or an object with ``encode``,
            ``encode_tokens``, ``dim``, ``fingerprint`` and ``path`` (default all-MiniLM-L6-v2).

    Returns:
        dict with the split (``train_photos``, ``held_out_photos``), ``question_types`` (their paraphrases), the
        graph's make-up (``held_out_products_in_graph`` is 0), ``selection`` (the chosen settings and every
        variant's cross-validated accuracy), ``results`` (variant -> question type -> held-out accuracy, plus
        ``mean``), ``reference``, ``counts`` (photos, questions and answers outside the vocabulary per type),
        ``beats_both`` (per type: image+graph above both ablations), ``paired_sign_test`` (per type and ablation:
        held-out photos image+graph answers better and worse, and the sign test's p-value), ``target_met`` and
        ``seconds``.

    Raises:
        ValidationError: for a missing folder or CSV, a CSV without the needed columns, bad options, or a split
            that leaves no photo to hold out.
        SourceError: for a missing or unreadable photo, naming it.
    """
    started = time.perf_counter()
    data_dir = Path(data_dir)
    _check_options(holdout=holdout, folds=folds, neighbours=neighbours, temperature=temperature, steps=steps,
                   gnn_epochs=gnn_epochs, head_epochs=head_epochs, seed_mixes=seed_mixes, head_weights=head_weights)
    products, catalogue, paths = read_fashion_folder(data_dir)
    labels, train, held_out = _split(data_dir, products, holdout, seed)
    settings = dict(neighbours=neighbours, temperature=temperature, steps=steps, gnn_epochs=gnn_epochs,
                    head_epochs=head_epochs, align_epochs=align_epochs, seed=seed, progress=progress)
    run = _fit_and_score(catalogue, products, paths, labels, train, held_out, folds=folds, seed_mixes=seed_mixes,
                         head_weights=head_weights, settings=settings, encoders=(image_encoder, text_encoder))
    scored = _held_out_results(run["final"], run["selection"])
    run["seconds"]["total"] = round(time.perf_counter() - started, 1)
    return {
        "task": "fashion photo QA: usage, season and article type of a product the graph does not have",
        "data": str(data_dir), "seed": seed, "holdout": holdout, "products": len(products),
        "train_photos": len(train), "held_out_photos": len(held_out),
        "question_types": {kind.name: list(kind.paraphrases) for kind in QUESTION_TYPES},
        "answer_vocabulary": _answer_vocabulary(run["context"]),
        "graph": run["graph"], "selection": run["selection"], **scored,
        "settings": {**{key: value for key, value in settings.items() if key not in ("seed", "progress")}, "folds": folds},
        "seconds": run["seconds"],
    }


def _check_options(*, holdout: float, folds: int, neighbours: int, temperature: float, steps: int, gnn_epochs: int,
                   head_epochs: int, seed_mixes: Sequence[float], head_weights: Sequence[float]) -> None:
    if not 0.0 < holdout < 1.0:
        raise ValidationError(f"holdout must be in (0, 1), got {holdout!r}")
    if folds < 2:
        raise ValidationError(f"folds must be >= 2 (cross-validation chooses the settings), got {folds!r}")
    if neighbours < 1:
        raise ValidationError(f"neighbours must be >= 1, got {neighbours!r}")
    if temperature <= 0:
        raise ValidationError(f"temperature must be > 0, got {temperature!r}")
    if steps not in (1, 2):
        raise ValidationError(f"steps must be 1 or 2, got {steps!r}")
    if gnn_epochs < 1 or head_epochs < 1:
        raise ValidationError(f"gnn_epochs and head_epochs must be >= 1, got {gnn_epochs!r} and {head_epochs!r}")
    if not seed_mixes or any(not 0.0 <= share <= 1.0 for share in seed_mixes):
        raise ValidationError(f"seed_mixes must be shares in [0, 1], got {list(seed_mixes)!r}")
    if not head_weights or any(weight < 0 for weight in head_weights):
        raise ValidationError(f"head_weights must be >= 0, got {list(head_weights)!r}")


def _split(data_dir: Path, products: list[dict[str, str]], holdout: float,
           seed: int) -> tuple[list[str], list[int], list[int]]:
    """Each photo's article type, and the training and held-out photos (``holdout`` of each article type)."""
    labels = [row["articleType"].strip() for row in products]
    train, held_out = stratified_split(labels, holdout, seed)
    if not held_out:
        raise ValidationError(f"holdout {holdout} of each article type leaves no photo to hold out in {data_dir}; "
                              "raise holdout or add photos (each article type needs 2 or more)")
    return labels, train, held_out


def _fit_and_score(catalogue: list[dict[str, str]], products: list[dict[str, str]], paths: list[Path],
                   labels: list[str], train: list[int], held_out: list[int], *, folds: int,
                   seed_mixes: Sequence[float], head_weights: Sequence[float], settings: dict,
                   encoders: tuple[Any, Any]) -> dict:
    """Build the graph and the features, choose the settings on validation folds and score the held-out photos
    with models refit on every training photo, on at most 2 torch threads.

    Returns:
        dict with ``graph`` (its make-up), ``context``, ``selection``, ``final`` (what :func:`run_fold` returns for
        the held-out photos) and ``seconds`` per stage.
    """
    import torch

    progress = settings["progress"]
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    try:
        seconds: dict[str, float] = {}
        clock = time.perf_counter()
        if progress:
            print(f"building the catalogue graph without the {len(held_out)} held-out products ...", flush=True)
        data, titles, graph_about = held_out_graph(catalogue, products, held_out)
        seconds["graph"] = round(time.perf_counter() - clock, 2)
        clock = time.perf_counter()
        context = build_context(data, titles, products, paths, train, *encoders, progress)
        seconds["features"] = round(time.perf_counter() - clock, 2)

        clock = time.perf_counter()
        fold_splits = [([train[i] for i in fit], [train[i] for i in val])
                       for fit, val in stratified_folds([labels[i] for i in train], folds, settings["seed"] + 1)]
        validation = [run_fold(context, fit, val, seed_mixes=seed_mixes, **settings) for fit, val in fold_splits if val]
        selection = _select(validation, seed_mixes, head_weights)
        seconds["selection"] = round(time.perf_counter() - clock, 2)

        clock = time.perf_counter()
        if progress:
            print(f"refitting on {len(train)} training photos and scoring {len(held_out)} held-out photos ...",
                  flush=True)
        final = run_fold(context, train, held_out, seed_mixes=[selection["seed_mix"]],
                         priors=[selection["no_image_prior"]], **settings)
        seconds["final"] = round(time.perf_counter() - clock, 2)
    finally:
        torch.set_num_threads(threads)
    return {"graph": graph_about, "context": context, "selection": selection, "final": final, "seconds": seconds}


def _answer_vocabulary(context) -> dict[str, int]:
    """How many answers each question type has in the answer vocabulary."""
    return {kind.name: int((context.candidate_kind == t).sum()) for t, kind in enumerate(QUESTION_TYPES)}


def _select(folds: Sequence[dict], seed_mixes: Sequence[float], head_weights: Sequence[float]) -> dict:
    """Choose ``seed_mix``, ``head_weight`` and the image-removed prior by the mean over question types of the
    accuracy pooled over the folds' validation photos (ties: the first in the given order)."""
    import torch

    examples = Examples(*(torch.cat([getattr(fold["examples"], name) for fold in folds])
                          for name in ("photo", "kind", "paraphrase", "answer")))

    def pooled(get) -> Any:
        return torch.cat([get(fold) for fold in folds])

    grid = []
    for share in seed_mixes:
        for weight in head_weights:
            scores = pooled(lambda fold, s=share, w=weight: combine(fold["graph"][s], fold["head"], w))
            grid.append({"seed_mix": share, "head_weight": weight, **_accuracy(examples, scores)})
    best = max(grid, key=lambda row: row["mean"])
    priors = list(folds[0]["prior"])
    prior_rows = {prior: _accuracy(examples, pooled(lambda fold, p=prior: fold["prior"][p]))
                  for prior in priors}
    prior = max(priors, key=lambda name: prior_rows[name]["mean"])
    kinds = [kind.name for kind in QUESTION_TYPES]
    return {
        "folds": len(folds), "validation_photos": int(examples.photo.unique().numel()),
        "seed_mix": best["seed_mix"], "head_weight": best["head_weight"], "no_image_prior": prior,
        "validation": {
            "image+graph": {key: best[key] for key in [*kinds, "mean"]},
            "image removed": prior_rows[prior],
            "graph removed": _accuracy(examples, pooled(lambda fold: fold["head"])),
            REFERENCE: _accuracy(examples, pooled(lambda fold: fold["knn"])),
        },
        "grid": grid,
        "priors": prior_rows,
    }


def _held_out_results(final: dict, selection: dict) -> dict:
    """Score the held-out photos' questions with the chosen settings: ``results``, ``reference``, ``counts``,
    ``beats_both``, ``paired_sign_test`` and ``target_met`` (see :func:`photo_qa_benchmark`)."""
    examples = final["examples"]
    predictions = {
        "image+graph": combine(final["graph"][selection["seed_mix"]], final["head"], selection["head_weight"]),
        "image removed": final["prior"][selection["no_image_prior"]],
        "graph removed": final["head"],
    }
    results = {name: _accuracy(examples, scores) for name, scores in predictions.items()}
    correct = {name: _correct(examples, scores) for name, scores in predictions.items()}
    paired = {kind.name: {f"vs {name}": _paired_photos(examples, t, correct["image+graph"], correct[name])
                          for name in VARIANTS[1:]} for t, kind in enumerate(QUESTION_TYPES)}
    reference = {REFERENCE: _accuracy(examples, final["knn"])}
    kinds = [kind.name for kind in QUESTION_TYPES]
    beats = {kind: results["image+graph"][kind] > max(results["image removed"][kind], results["graph removed"][kind])
             for kind in kinds}
    return {"results": results, "reference": reference, "counts": _counts(examples), "beats_both": beats,
            "paired_sign_test": paired, "target_met": all(beats.values())}


def _correct(examples: Examples, scores):
    """``[E]`` bool: whether the top answer of each question's ``[E, V]`` scores is its answer."""
    return (scores.argmax(dim=1) == examples.answer) & (examples.answer >= 0)


def _accuracy(examples: Examples, scores) -> dict:
    """Top-1 accuracy per question type (and their ``mean``) of ``[E, V]`` answer-vocabulary scores."""
    correct = _correct(examples, scores)
    result = {}
    for t, kind in enumerate(QUESTION_TYPES):
        chosen = examples.kind == t
        result[kind.name] = round(float(correct[chosen].float().mean()), 4) if bool(chosen.any()) else 0.0
    result["mean"] = round(sum(result.values()) / len(QUESTION_TYPES), 4)
    return result


def sign_test(better: int, worse: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven between ``better`` and ``worse`` if
    either were equally likely (ties left out).

    Args:
        better (int): paired units where the first model does better.
        worse (int): paired units where it does worse.

    Returns:
        float: the p-value, to three significant digits (1.0 when both are 0).
    """
    import math

    count = better + worse
    if count == 0:
        return 1.0
    tail = sum(math.comb(count, i) for i in range(min(better, worse) + 1)) / 2**count
    return float(f"{min(1.0, 2 * tail):.3g}")


def _paired_photos(examples: Examples, kind: int, correct_a, correct_b) -> dict:
    """Photos where model a answers more of the paraphrases of question type ``kind`` right than model b
    (``better``), fewer (``worse``), and the sign test's p-value: photos, not paraphrases, are the independent
    units."""
    import torch

    chosen = examples.kind == kind
    photos, position = examples.photo[chosen].unique(return_inverse=True)
    difference = torch.zeros(photos.numel()).index_add_(0, position,
                                                        correct_a[chosen].float() - correct_b[chosen].float())
    better, worse = int((difference > 0).sum()), int((difference < 0).sum())
    return {"better": better, "worse": worse, "p_value": sign_test(better, worse)}


def _counts(examples: Examples) -> dict:
    """Per question type: photos asked about, questions, and photos whose answer is outside the vocabulary."""
    counts = {}
    for t, kind in enumerate(QUESTION_TYPES):
        chosen = examples.kind == t
        counts[kind.name] = {"photos": int(examples.photo[chosen].unique().numel()), "questions": int(chosen.sum()),
                             "answer_outside_vocabulary": int(examples.photo[chosen & (examples.answer < 0)]
                                                              .unique().numel())}
    return counts


__all__ = ["HEAD_WEIGHTS", "REFERENCE", "SEED_MIXES", "VARIANTS", "photo_qa_benchmark", "sign_test"]
