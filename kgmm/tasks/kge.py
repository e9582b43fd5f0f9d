"""Knowledge-graph embeddings: train, evaluate (filtered link-prediction ranking) and predict links.

Data: a triples directory holds ``train.txt`` and ``valid.txt``, one ``head<TAB>relation<TAB>tail`` a line
(``head|relation|tail`` is accepted too). Entities and relations are keyed by their names as written in
these files (surrounding whitespace removed): a model is usable on any triples file that uses the same
names. Their indices come from :class:`kgmm.graphdata.vocab.Vocabulary` (train first, in order of first
appearance, then names new in valid), saved beside the weights.

Training (:func:`train_kge`): every training triple ``(h, r, t)`` also gives its reciprocal ``(t, r⁻¹, h)``;
each is a query ``(head, relation, ?)`` scored against all entities at once
(:meth:`kgmm.nn.kge.KGELinkPredictor.score_tails`) with cross-entropy towards the true tail (1-vs-all),
optionally with label smoothing, query dropout and the N3 regulariser. Every ``eval_every`` epochs the model
is scored on valid (filtered MRR); the best state is kept and training stops after ``patience`` scorings
without improvement. Valid is used only for this selection, never for gradients.

Evaluation (:func:`filtered_ranks`, :func:`evaluate_kge`): the standard filtered protocol in both directions.
For ``(h, r, t)`` the tail ``t`` is ranked among all entities scoring ``(h, r, ?)``, every other tail known
to be true (train, valid, the evaluated file, and any extra files) being left out; the head likewise for
``(?, r, t)`` through the inverse relation. Ties count against the model: rank = 1 + number of other
candidates scoring at least as high. MRR is the mean of 1/rank over both directions; Hits@k the fraction of
ranks <= k.

For ``rgcn`` the encoder passes messages over all training triples (both directions) at every step, as in
Schlichtkrull et al.; the decoder is DistMult over the encoded entities.

Note on valid scores: a valid triple is ranked against true facts that no file given here contains (for the
UMLS benchmark, the 661 triples of its held-out test split), and those count as errors. On UMLS this bounds
filtered valid MRR near 0.72 even for a model that ranks every true fact above every false one (measured
by holding 652 training triples out: with the real valid triples unfiltered, such an oracle scores 0.72),
while papers filter with train, valid and test. :func:`evaluate_kge` on ``test.txt`` filters with all three;
``extra_known`` adds more files.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgmm import __version__
from kgmm.errors import KgmmError, SourceError, ValidationError
from kgmm.graphdata.vocab import Vocabulary
from kgmm.sources.triples import read_triple_lines
from kgmm.tasks.checkpoint import read_model_config
from kgmm.utils import package_versions, seed_everything

if TYPE_CHECKING:
    import torch

    from kgmm.nn.kge import KGEConfig, KGELinkPredictor

__all__ = [
    "KGEHyperParams",
    "KGEModel",
    "LinkPrediction",
    "TripleNames",
    "default_hparams",
    "evaluate_kge",
    "filtered_ranks",
    "load_kge_model",
    "predict_links",
    "ranking_metrics",
    "read_triple_names",
    "train_kge",
]

MODEL_KIND = "kgmm-kge-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_SAFETENSORS = "weights.safetensors"
WEIGHTS_TORCH = "weights.pt"
ENTITIES_FILE = "entities.json"
RELATIONS_FILE = "relations.json"
TRIPLES_FILES = {"train": "triples_train.txt", "valid": "triples_valid.txt"}
HITS_AT = (1, 3, 10)

Triple = tuple[str, str, str]


@dataclass
class TripleNames:
    """The triples of one file, as names.

    Args:
        path (Path): the file.
        triples (list[tuple[str, str, str]]): (head, relation, tail) per line, in file order.
    """

    path: Path
    triples: list[Triple] = field(default_factory=list)


def read_triple_names(path: str | Path) -> TripleNames:
    """Read a triples file (``head<TAB>relation<TAB>tail`` or ``head|relation|tail``, one a line) as names.

    The separator is detected as :func:`kgmm.sources.triples.read_triple_lines` does. Blank lines are skipped;
    every other line must have exactly three non-empty fields. Names keep their spelling (only surrounding
    whitespace is removed): they are the model's keys.

    Raises:
        SourceError: when the file is missing or unreadable, or a line is not a triple (naming file and line).
    """
    path = Path(path)
    lines, separator = read_triple_lines(path)
    shown = "TAB" if separator == "\t" else "|"
    triples: list[Triple] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = [part.strip() for part in line.split(separator)]
        if len(parts) != 3 or not all(parts):
            problem = f"found {len(parts)} fields" if len(parts) != 3 else "an empty field"
            raise SourceError(
                f"expected head{separator}relation{separator}tail (3 non-empty fields separated by {shown}), "
                f"{problem}: {line[:80]!r}; fix or remove this line", path=str(path), line=number,
            )
        triples.append((parts[0], parts[1], parts[2]))
    return TripleNames(path=path, triples=triples)


def _read_triples_dir(triples_dir: Path) -> tuple[TripleNames, TripleNames]:
    if not triples_dir.is_dir():
        raise SourceError("expected a directory holding train.txt and valid.txt (head<TAB>relation<TAB>tail per "
                          "line)", path=str(triples_dir))
    missing = [name for name in ("train.txt", "valid.txt") if not (triples_dir / name).is_file()]
    if missing:
        raise SourceError(f"no {' or '.join(missing)} here; a triples directory needs train.txt (trained on) and "
                          "valid.txt (the model is selected on it)", path=str(triples_dir))
    train = read_triple_names(triples_dir / "train.txt")
    valid = read_triple_names(triples_dir / "valid.txt")
    if not train.triples:
        raise SourceError("no triples in train.txt; add head<TAB>relation<TAB>tail lines", path=str(train.path))
    if not valid.triples:
        raise SourceError("no triples in valid.txt; the model is selected on it, add some held-out triples",
                          path=str(valid.path))
    return train, valid


def _build_vocabularies(*triple_sets: Sequence[Triple]) -> tuple[Vocabulary, Vocabulary]:
    entities = Vocabulary(name="entities")
    relations = Vocabulary(name="relations")
    for triples in triple_sets:
        for head, relation, tail in triples:
            entities.add(head)
            entities.add(tail)
            relations.add(relation)
    return entities, relations


def filtered_ranks(scores: torch.Tensor, targets: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
    """Rank each query's true answer among all candidates, leaving out the other known answers.

    Ties count against the model: rank = 1 + the number of candidates other than the target, not filtered,
    whose score is at least the target's. A NaN score counts as beating the target (and a NaN target score
    is beaten by every candidate).

    Args:
        scores (Tensor): candidate scores, shape ``[B, N]`` (higher is better).
        targets (Tensor): index of the true answer of each query, shape ``[B]``.
        known (Tensor, optional): ``[B, N]`` booleans, True for the other true answers to filter out (the
            target's own entry is ignored). (default: None, the raw protocol)

    Returns:
        Tensor: ``[B]`` ranks, 1 the best.
    """
    import torch

    if scores.dim() != 2 or targets.shape != (scores.size(0),):
        raise ValidationError(f"expected scores of shape [B, N] and targets of shape [B], got {list(scores.shape)} "
                              f"and {list(targets.shape)}")
    if known is not None and known.shape != scores.shape:
        raise ValidationError(f"expected known of the shape of scores {list(scores.shape)}, got {list(known.shape)}")
    rows = torch.arange(scores.size(0), device=scores.device)
    target_scores = scores[rows, targets].unsqueeze(1)
    beats = (scores >= target_scores) | scores.isnan() | target_scores.isnan()
    candidates = torch.ones_like(beats) if known is None else ~known
    candidates[rows, targets] = False
    return 1 + (beats & candidates).sum(dim=1)


def ranking_metrics(ranks: torch.Tensor, hits_at: Iterable[int] = HITS_AT) -> dict[str, float | int]:
    """MRR, mean rank and Hits@k of ``ranks`` (1 the best): ``{"mrr", "mean_rank", "hits@1", ..., "rankings"}``."""
    ranks = ranks.double()
    if ranks.numel() == 0:
        return {"mrr": 0.0, "mean_rank": 0.0, **{f"hits@{k}": 0.0 for k in hits_at}, "rankings": 0}
    result: dict[str, float | int] = {
        "mrr": round(float((1.0 / ranks).mean()), 6),
        "mean_rank": round(float(ranks.mean()), 4),
    }
    for k in hits_at:
        result[f"hits@{k}"] = round(float((ranks <= k).double().mean()), 6)
    result["rankings"] = int(ranks.numel())
    return result


class _AnswerIndex:
    """Known answers per query ``(entity, relation)``, relations in ``0..2R-1`` (inverses after the forward ones)."""

    def __init__(self, num_relations: int) -> None:
        self.num_relations = num_relations
        self.answers: dict[tuple[int, int], set[int]] = {}

    def add(self, triples: torch.Tensor) -> _AnswerIndex:
        answers, num_relations = self.answers, self.num_relations
        for head, relation, tail in triples.tolist():
            answers.setdefault((head, relation), set()).add(tail)
            answers.setdefault((tail, relation + num_relations), set()).add(head)
        return self

    def mask(self, entities: torch.Tensor, relations: torch.Tensor, num_nodes: int) -> torch.Tensor:
        import torch

        rows, columns = [], []
        for row, key in enumerate(zip(entities.tolist(), relations.tolist(), strict=True)):
            found = self.answers.get(key, ())
            rows.extend([row] * len(found))
            columns.extend(found)
        mask = torch.zeros(len(entities), num_nodes, dtype=torch.bool)
        if rows:
            mask[torch.tensor(rows), torch.tensor(columns)] = True
        return mask


@dataclass
class _RankedQueries:
    tail_ranks: torch.Tensor
    head_ranks: torch.Tensor

    def metrics(self) -> dict:
        import torch

        both = ranking_metrics(torch.cat([self.tail_ranks, self.head_ranks]))
        both["tail_mrr"] = ranking_metrics(self.tail_ranks)["mrr"]
        both["head_mrr"] = ranking_metrics(self.head_ranks)["mrr"]
        both["triples"] = int(self.tail_ranks.numel())
        return both


def _rank_triples(module: KGELinkPredictor, triples: torch.Tensor, answers: _AnswerIndex,
                  batch_size: int = 512) -> _RankedQueries:
    """Filtered ranks of the tails and heads of ``triples`` (``[T, 3]`` indices) under ``module``."""
    import torch

    was_training = module.training
    module.eval()
    tail_ranks, head_ranks = [], []
    num_nodes, num_relations = module.num_nodes, module.num_relations
    with torch.no_grad():
        states = module.entity_states()
        for batch in triples.split(batch_size):
            head, relation, tail = batch[:, 0], batch[:, 1], batch[:, 2]
            scores = module.score_tails(head, relation, states)
            tail_ranks.append(filtered_ranks(scores, tail, answers.mask(head, relation, num_nodes)))
            scores = module.score_heads(relation, tail, states)
            head_ranks.append(filtered_ranks(scores, head, answers.mask(tail, relation + num_relations, num_nodes)))
    module.train(was_training)
    empty = torch.empty(0, dtype=torch.long)
    return _RankedQueries(torch.cat(tail_ranks) if tail_ranks else empty, torch.cat(head_ranks) if head_ranks else empty)


@dataclass(frozen=True)
class KGEHyperParams:
    """Training settings; :func:`default_hparams` gives each model's defaults.

    Args:
        hidden_channels (int): embedding size (per real/imaginary part for ``complex``/``rotate``).
        epochs (int): most passes over the training triples (early stopping may end sooner).
        batch_size (int): queries per step (each triple gives two: its tail and, reciprocally, its head).
        lr (float): learning rate.
        optimizer (str): ``adagrad`` or ``adam``.
        n3 (float): weight of the N3 regulariser (0 turns it off).
        dropout (float): dropout on the query before it meets the candidate tails.
        label_smoothing (float): label smoothing of the cross-entropy.
        logit_scale (float): the scores are multiplied by this inside the loss only (a softmax temperature; the
            ranking is unchanged). ``transe`` needs it: its unit-norm entities keep scores within a narrow band.
        eval_every (int): score valid every this many epochs.
        patience (int): stop after this many valid scorings without a better MRR (0: never stop early).
        margin (float): ``transe``/``rotate`` score offset (no effect on the ranking or the loss).
        p_norm (float): ``transe`` distance norm.
        num_layers (int): ``rgcn`` layers.
        num_bases (int or None): ``rgcn`` basis decomposition.
        encoder_dropout (float): ``rgcn`` dropout between layers.
    """

    hidden_channels: int = 200
    epochs: int = 60
    batch_size: int = 100
    lr: float = 0.1
    optimizer: str = "adagrad"
    n3: float = 0.0
    dropout: float = 0.0
    label_smoothing: float = 0.0
    logit_scale: float = 1.0
    eval_every: int = 5
    patience: int = 4
    margin: float = 1.0
    p_norm: float = 1.0
    num_layers: int = 2
    num_bases: int | None = None
    encoder_dropout: float = 0.0


# Chosen by filtered MRR on UMLS valid (trained on train only; 2 CPU cores): ComplEx about 0.69-0.70 within
# 10-40 s, DistMult 0.68, RotatE 0.67, R-GCN 0.68 in about 2 minutes, TransE 0.59 (translations cannot fit
# one-to-many relations). Settings within about 0.01 of each other were equal within seed noise.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "complex": {"dropout": 0.3, "n3": 0.005},
    "distmult": {"dropout": 0.3},
    "rotate": {"optimizer": "adam", "lr": 0.01},
    "transe": {"optimizer": "adam", "lr": 0.003, "p_norm": 2.0, "logit_scale": 10.0, "epochs": 100},
    "rgcn": {"optimizer": "adam", "lr": 0.01, "hidden_channels": 100, "num_bases": 10, "batch_size": 1000},
}


def default_hparams(model: str) -> KGEHyperParams:
    """Return the default training settings of ``model`` (``complex``, ``distmult``, ``rotate``, ``transe``, ``rgcn``)."""
    from kgmm.nn.kge import KGE_MODELS

    if model not in KGE_MODELS:
        raise ValidationError(f"no KGE model {model!r}; available: {', '.join(KGE_MODELS)}")
    return KGEHyperParams(**_DEFAULTS[model])


def _resolve_hparams(model: str, overrides: dict | None) -> KGEHyperParams:
    base = default_hparams(model)
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    valid = {f.name for f in fields(KGEHyperParams)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValidationError(f"unknown KGE hyper-parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    hparams = replace(base, **overrides)
    if hparams.optimizer not in ("adagrad", "adam"):
        raise ValidationError(f"no optimizer {hparams.optimizer!r}; available: adagrad, adam")
    for name in ("hidden_channels", "epochs", "batch_size", "eval_every"):
        if getattr(hparams, name) < 1:
            raise ValidationError(f"{name} must be at least 1, got {getattr(hparams, name)}")
    if hparams.lr <= 0 or hparams.logit_scale <= 0:
        raise ValidationError(f"lr and logit_scale must be positive, got {hparams.lr} and {hparams.logit_scale}")
    for name in ("dropout", "label_smoothing", "encoder_dropout"):
        if not 0.0 <= getattr(hparams, name) < 1.0:
            raise ValidationError(f"{name} must be in [0, 1), got {getattr(hparams, name)}")
    return hparams


@dataclass
class KGEModel:
    """A trained link predictor with what it needs to read names and to filter: see :func:`load_kge_model`.

    Args:
        module (KGELinkPredictor): the network.
        entities (Vocabulary): entity names <-> indices.
        relations (Vocabulary): relation names <-> indices.
        known (dict[str, Tensor]): ``"train"`` and ``"valid"`` triples as ``[T, 3]`` indices.
        config (dict): what ``config.json`` holds.
    """

    module: KGELinkPredictor
    entities: Vocabulary
    relations: Vocabulary
    known: dict[str, torch.Tensor]
    config: dict

    @property
    def name(self) -> str:
        return self.config["model"]

    def encode(self, triples: Sequence[Triple], *, source: str = "the triples") -> torch.Tensor:
        """Return ``[T, 3]`` indices of named triples.

        Raises:
            ValidationError: when names are not in the model's vocabularies (naming them; a file from another
                graph says that its vocabulary does not match).
        """
        import torch

        unknown_entities = sorted({name for h, _, t in triples for name in (h, t) if name not in self.entities})
        unknown_relations = sorted({r for _, r, _ in triples if r not in self.relations})
        if unknown_entities or unknown_relations:
            parts = []
            if unknown_entities:
                parts.append(f"{len(unknown_entities)} unknown entit{'y' if len(unknown_entities) == 1 else 'ies'} "
                             f"({_preview(unknown_entities)})")
            if unknown_relations:
                parts.append(f"{len(unknown_relations)} unknown relation{'' if len(unknown_relations) == 1 else 's'} "
                             f"({_preview(unknown_relations)})")
            raise ValidationError(
                f"{source} do not match the model's vocabulary: {' and '.join(parts)} among {len(triples)} triples; "
                f"the model knows {len(self.entities)} entities and {len(self.relations)} relations of the graph it "
                "was trained on. Use triples of that graph (same names), or retrain with these names in train.txt"
            )
        entity_index, relation_index = self.entities.get, self.relations.get
        rows = [(entity_index(h), relation_index(r), entity_index(t)) for h, r, t in triples]
        return torch.tensor(rows, dtype=torch.long).view(-1, 3)

    def check_graph(self, entities: Vocabulary | None = None, relations: Vocabulary | None = None) -> None:
        """Raise unless a graph's vocabularies keep every index of the model's (they may add names after them).

        Raises:
            ValidationError: naming the first name whose index differs (:meth:`Vocabulary.check_compatible`).
        """
        if entities is not None:
            self.entities.check_compatible(entities, what="the KGE model")
        if relations is not None:
            self.relations.check_compatible(relations, what="the KGE model")

    def answer_index(self, *extra: torch.Tensor) -> _AnswerIndex:
        index = _AnswerIndex(self.module.num_relations)
        for triples in (*self.known.values(), *extra):
            index.add(triples)
        return index

    def save(self, out_dir: str | Path) -> Path:
        """Write ``config.json``, the weights, ``entities.json``, ``relations.json`` and the known triples."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().contiguous().cpu() for key, value in self.module.state_dict().items()}
        try:
            from safetensors.torch import save_file
        except ImportError:
            import torch

            weights = WEIGHTS_TORCH
            torch.save(state, out_dir / weights)
        else:
            weights = WEIGHTS_SAFETENSORS
            save_file(state, str(out_dir / weights))
        stale = out_dir / (WEIGHTS_TORCH if weights == WEIGHTS_SAFETENSORS else WEIGHTS_SAFETENSORS)
        stale.unlink(missing_ok=True)
        self.entities.save(out_dir / ENTITIES_FILE)
        self.relations.save(out_dir / RELATIONS_FILE)
        for split, file_name in TRIPLES_FILES.items():
            lines = [f"{self.entities.key(h)}\t{self.relations.key(r)}\t{self.entities.key(t)}\n"
                     for h, r, t in self.known[split].tolist()]
            (out_dir / file_name).write_text("".join(lines), encoding="utf-8")
        self.config["weights"] = weights
        (out_dir / CONFIG_FILE).write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
        return out_dir


def _preview(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f", ... {len(names) - limit} more" if len(names) > limit else "")


def load_kge_model(model_dir: str | Path, *, entities: Vocabulary | None = None,
                   relations: Vocabulary | None = None) -> KGEModel:
    """Load a model written by :func:`train_kge`, optionally checking it against a graph's vocabularies.

    Args:
        model_dir (Path): the checkpoint directory.
        entities (Vocabulary, optional): the graph's entity vocabulary; it must keep every index of the model's.
        relations (Vocabulary, optional): the graph's relation vocabulary, likewise.

    Raises:
        SourceError: the directory is missing, is not a KGE checkpoint, or has missing or corrupt files.
        ValidationError: the given vocabularies do not line up with the model's.
    """

    from kgmm.nn.kge import KGEConfig, KGELinkPredictor

    model_dir = Path(model_dir)
    fix = f"train one with `kgmm train kge --triples DIR --out {model_dir}`"
    config_path = model_dir / CONFIG_FILE
    config = read_model_config(model_dir, kind=MODEL_KIND, max_format=FORMAT_VERSION, what="a KGE model", fix=fix)
    try:
        module_config = KGEConfig.from_dict(config["module"])
    except (KeyError, TypeError, ValidationError) as e:
        raise SourceError(f"the model config is damaged ({e}); {fix}", path=str(config_path)) from e
    try:
        model_entities = Vocabulary.load(model_dir / ENTITIES_FILE)
        model_relations = Vocabulary.load(model_dir / RELATIONS_FILE)
    except ValidationError as e:
        raise SourceError(f"{e}; {fix}", path=str(model_dir)) from e
    model_entities.name, model_relations.name = "entities", "relations"
    if len(model_entities) != module_config.num_nodes or len(model_relations) != module_config.num_relations:
        raise SourceError(
            f"{ENTITIES_FILE}/{RELATIONS_FILE} hold {len(model_entities)} entities and {len(model_relations)} relations "
            f"but the model was built for {module_config.num_nodes} and {module_config.num_relations}; the directory "
            f"mixes files of different models: {fix}", path=str(model_dir))
    module = KGELinkPredictor(module_config)
    try:
        module.load_state_dict(_load_state(model_dir, config, fix))
    except RuntimeError as e:
        raise SourceError(f"the weights do not fit the model config ({e}); {fix}", path=str(model_dir)) from e
    module.eval()
    model = KGEModel(module, model_entities, model_relations, {}, config)
    for split, file_name in TRIPLES_FILES.items():
        path = model_dir / file_name
        if not path.is_file():
            raise SourceError(f"missing {file_name} (the {split} triples the model filters with); {fix}",
                              path=str(model_dir))
        model.known[split] = model.encode(read_triple_names(path).triples, source=str(path))
    train = model.known["train"]
    module.set_graph(train[:, [0, 2]].t(), train[:, 1])
    model.check_graph(entities, relations)
    return model


def _load_state(model_dir: Path, config: dict, fix: str) -> dict:
    import torch

    names = [config.get("weights"), WEIGHTS_SAFETENSORS, WEIGHTS_TORCH]
    path = next((model_dir / name for name in names if name and (model_dir / name).is_file()), None)
    if path is None:
        raise SourceError(f"no weights ({WEIGHTS_SAFETENSORS} or {WEIGHTS_TORCH}; interrupted training?); {fix}",
                          path=str(model_dir))
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors, pickle and zip errors have no common base
        raise SourceError(f"corrupt weights file ({type(e).__name__}: {e}); {fix}", path=str(path)) from e


def train_kge(
    triples_dir: str | Path,
    out_dir: str | Path,
    *,
    model: str = "complex",
    seed: int = 0,
    hparams: dict | None = None,
    progress: bool = True,
) -> dict:
    """Train a link predictor on ``triples_dir/train.txt``, select it on ``valid.txt``, and save it.

    Args:
        triples_dir (Path): a directory with ``train.txt`` and ``valid.txt`` (``head<TAB>relation<TAB>tail``).
        out_dir (Path): the checkpoint directory to write (config.json, weights, entities.json, relations.json,
            the train/valid triples).
        model (str, optional): ``complex``, ``distmult``, ``rotate``, ``transe`` or ``rgcn``. (default: ``complex``)
        seed (int, optional): seeds python, numpy and torch. (default: 0)
        hparams (dict, optional): overrides of :func:`default_hparams` (``epochs``, ``hidden_channels``, ``lr``, ...).
        progress (bool, optional): show a progress bar. (default: True)

    Returns:
        dict: the valid metrics of the selected model, the epoch it came from, and the training time.
    """
    settings = _resolve_hparams(model, hparams)
    started = time.perf_counter()
    train_names, valid_names = _read_triples_dir(Path(triples_dir))
    entities, relations = _build_vocabularies(train_names.triples, valid_names.triples)
    train_entities, _ = _build_vocabularies(train_names.triples)
    seed_everything(seed)
    bundle = _untrained_model(model, settings, seed, entities, relations, train_names, valid_names)
    train, valid = bundle.known["train"], bundle.known["valid"]
    fit = _fit(bundle.module, train, valid, bundle.answer_index(), settings, progress=progress, name=model)
    seconds = round(time.perf_counter() - started, 2)
    bundle.config["metrics"] = {
        "valid": fit.valid,
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "train_seconds": seconds,
        "history": fit.history,
    }
    bundle.config["graph"] = {
        "entities": len(entities), "relations": len(relations), "train_triples": int(len(train)),
        "valid_triples": int(len(valid)), "entities_only_in_valid": len(entities) - len(train_entities),
    }
    bundle.save(out_dir)
    return {
        "model": model,
        "out": str(out_dir),
        "valid": fit.valid,
        "best_epoch": fit.best_epoch,
        "epochs_run": fit.epochs_run,
        "train_seconds": seconds,
        **bundle.config["graph"],
    }


def _untrained_model(model: str, settings: KGEHyperParams, seed: int, entities: Vocabulary, relations: Vocabulary,
                     train_names: TripleNames, valid_names: TripleNames) -> KGEModel:
    """A freshly initialised model bundle holding the encoded train (deduplicated) and valid triples; the
    ``rgcn`` encoder's graph is the train triples."""
    import torch

    from kgmm.nn.kge import KGEConfig, KGELinkPredictor

    module_config = KGEConfig(
        model=model, num_nodes=len(entities), num_relations=len(relations), hidden_channels=settings.hidden_channels,
        dropout=settings.dropout, margin=settings.margin, p_norm=settings.p_norm, num_layers=settings.num_layers,
        num_bases=settings.num_bases, encoder_dropout=settings.encoder_dropout,
    )
    module = KGELinkPredictor(module_config)
    config = _checkpoint_config(model, module_config, settings, seed, train_names, valid_names)
    bundle = KGEModel(module, entities, relations, {}, config)
    train = torch.unique(bundle.encode(train_names.triples, source=str(train_names.path)), dim=0)
    valid = bundle.encode(valid_names.triples, source=str(valid_names.path))
    bundle.known = {"train": train, "valid": valid}
    module.set_graph(train[:, [0, 2]].t(), train[:, 1])
    return bundle


def _checkpoint_config(model: str, module_config: KGEConfig, settings: KGEHyperParams, seed: int,
                       train_names: TripleNames, valid_names: TripleNames) -> dict:
    """What ``config.json`` says of a model before training (the metrics and graph counts join it after)."""
    return {
        "kind": MODEL_KIND,
        "format_version": FORMAT_VERSION,
        "model": model,
        "module": module_config.to_dict(),
        "hparams": asdict(settings),
        "seed": seed,
        "training": "1-vs-all cross-entropy over all tails with reciprocal relations (r + num_relations is the "
                    "inverse of r); selected by filtered MRR on valid",
        "keys": "entities and relations are keyed by their names in the triples files",
        "train_file": str(train_names.path),
        "valid_file": str(valid_names.path),
        "versions": {"kgmm": __version__, **package_versions(["torch", "torch_geometric"])},
    }


@dataclass
class _Fit:
    valid: dict
    best_epoch: int
    epochs_run: int
    history: list[dict]


def _fit(module: KGELinkPredictor, train: torch.Tensor, valid: torch.Tensor, answers: _AnswerIndex,
         settings: KGEHyperParams, *, progress: bool, name: str) -> _Fit:
    """Train ``module`` 1-vs-all on ``train`` and its reciprocals; leave it in its best state on ``valid``."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    num_relations = module.num_relations
    queries = torch.cat([train, torch.stack([train[:, 2], train[:, 1] + num_relations, train[:, 0]], dim=1)])
    optimizer_class = torch.optim.Adagrad if settings.optimizer == "adagrad" else torch.optim.Adam
    optimizer = optimizer_class(module.parameters(), lr=settings.lr)
    best: dict | None = None
    best_state: dict | None = None
    stale, epoch, history = 0, 0, []
    bar = tqdm(total=settings.epochs, desc=f"train {name}", unit="epoch", disable=not progress)
    module.train()
    for epoch in range(1, settings.epochs + 1):
        total, steps = 0.0, 0
        for batch in queries[torch.randperm(len(queries))].split(settings.batch_size):
            head, relation, tail = batch[:, 0], batch[:, 1], batch[:, 2]
            states = module.entity_states()  # the R-GCN encodes the graph anew at every step
            scores = module.score_tails(head, relation, states) * settings.logit_scale
            loss = F.cross_entropy(scores, tail, label_smoothing=settings.label_smoothing)
            if settings.n3:
                loss = loss + settings.n3 * module.n3_penalty(head, relation, tail, states)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            steps += 1
        if not math.isfinite(total):
            raise KgmmError(f"training diverged at epoch {epoch} (loss {total}); lower the learning rate "
                            f"(now {settings.lr}) or the embedding size")
        bar.update(1)
        if epoch % settings.eval_every == 0 or epoch == settings.epochs:
            metrics = _rank_triples(module, valid, answers).metrics()
            history.append({"epoch": epoch, "loss": round(total / steps, 6), "valid_mrr": metrics["mrr"]})
            bar.set_postfix(loss=f"{total / steps:.4f}", valid_mrr=f"{metrics['mrr']:.4f}")
            if best is None or metrics["mrr"] > best["mrr"]:
                best, best_state, stale = {**metrics, "epoch": epoch}, copy.deepcopy(module.state_dict()), 0
            else:
                stale += 1
                if settings.patience and stale >= settings.patience:
                    break
    bar.close()
    module.load_state_dict(best_state)
    module.eval()
    valid_metrics = {key: value for key, value in best.items() if key != "epoch"}
    return _Fit(valid=valid_metrics, best_epoch=best["epoch"], epochs_run=epoch, history=history)


def _as_model(model: KGEModel | str | Path) -> KGEModel:
    return model if isinstance(model, KGEModel) else load_kge_model(model)


def evaluate_kge(
    model: KGEModel | str | Path,
    triples_path: str | Path,
    *,
    extra_known: Sequence[str | Path] = (),
    batch_size: int = 512,
) -> dict:
    """Filtered MRR, mean rank and Hits@1/3/10 of a model on a triples file, over heads and tails.

    Args:
        model (KGEModel or Path): a loaded model or its checkpoint directory.
        triples_path (Path): the triples to rank (e.g. ``test.txt``); names must be in the model's vocabulary.
        extra_known (list of Path, optional): more files of true triples to filter with, beside the model's
            train and valid triples and ``triples_path`` itself. (default: none)
        batch_size (int, optional): queries scored at once. (default: 512)

    Returns:
        dict: ``mrr``, ``mean_rank``, ``hits@1``, ``hits@3``, ``hits@10``, ``tail_mrr``, ``head_mrr``,
        ``triples``, ``rankings`` (two per triple), and the files used.

    Raises:
        ValidationError: when the file's names do not match the model's vocabulary.
    """
    model = _as_model(model)
    evaluated = read_triple_names(triples_path)
    triples = model.encode(evaluated.triples, source=str(evaluated.path))
    extra = [model.encode(read_triple_names(path).triples, source=str(path)) for path in extra_known]
    answers = model.answer_index(triples, *extra)
    metrics = _rank_triples(model.module, triples, answers, batch_size=batch_size).metrics()
    return {"model": model.name, "triples_file": str(evaluated.path), "filtered_with": [
        "train", "valid", str(evaluated.path), *map(str, extra_known)], **metrics}


@dataclass
class LinkPrediction:
    """One predicted tail of ``(head, relation, ?)``.

    Args:
        tail (str): the entity name.
        score (float): the model's score (higher is likelier).
        probability (float): softmax of the scores over all entities.
        known (bool): whether the triple is in the model's train/valid triples or a given file.
        source (str or None): where it is known from (``train``, ``valid`` or a file path).
    """

    tail: str
    score: float
    probability: float
    known: bool
    source: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def predict_links(
    model: KGEModel | str | Path,
    head: str,
    relation: str,
    *,
    k: int = 10,
    known_paths: Sequence[str | Path] = (),
    new_only: bool = False,
) -> list[LinkPrediction]:
    """Return the ``k`` best tails of ``(head, relation, ?)``, each marked known or new.

    Args:
        model (KGEModel or Path): a loaded model or its checkpoint directory.
        head (str): the head entity name, as in the triples files.
        relation (str): the relation name.
        k (int, optional): how many tails. (default: 10)
        known_paths (list of Path, optional): triples files (or directories of ``*.txt`` triples files) whose
            triples also count as known. (default: none)
        new_only (bool, optional): leave out known tails, keeping the ``k`` best new ones. (default: False)

    Raises:
        ValidationError: an unknown head or relation (naming it and the closest known names), or ``k < 1``.
    """
    import torch

    model = _as_model(model)
    if k < 1:
        raise ValidationError(f"k must be at least 1, got {k}")
    head_index = _lookup(model.entities, head, "entity")
    relation_index = _lookup(model.relations, relation, "relation")
    sources: dict[int, str] = {}
    for split in ("valid", "train"):  # train wins when both hold it
        for h, r, t in model.known[split].tolist():
            if h == head_index and r == relation_index:
                sources[t] = split
    for path in _triples_files(known_paths):
        for h, r, t in read_triple_names(path).triples:
            if h == head and r == relation and t in model.entities:
                sources.setdefault(model.entities.index(t), str(path))
    with torch.no_grad():
        scores = model.module.score_tails(torch.tensor([head_index]), torch.tensor([relation_index]))[0]
    probabilities = torch.softmax(scores, dim=0)
    if new_only and sources:
        scores = scores.clone()
        scores[list(sources)] = -math.inf
    top = torch.topk(scores, min(k, len(scores) - (len(sources) if new_only else 0)))
    return [
        LinkPrediction(model.entities.key(index), round(float(score), 6), round(float(probabilities[index]), 6),
                       index in sources, sources.get(index))
        for score, index in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def _triples_files(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(path.glob("*.txt"))
            if not found:
                raise SourceError("no *.txt triples files in this directory", path=str(path))
            files.extend(found)
        else:
            files.append(path)
    return files


def _lookup(vocabulary: Vocabulary, name: str, what: str) -> int:
    index = vocabulary.get(name)
    if index is not None:
        return index
    from rapidfuzz import process

    close = [match for match, _, _ in process.extract(name, vocabulary.keys, limit=5, score_cutoff=50)]
    hint = f"; did you mean {', '.join(repr(m) for m in close)}?" if close else "."
    raise ValidationError(f"unknown {what} {name!r}: not among the model's {len(vocabulary)} {vocabulary.name}{hint} "
                          "Names are matched exactly as written in the triples files")
