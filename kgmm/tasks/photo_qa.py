"""Photo question answering for the retail case: a product photo and a question, answered through the catalogue graph.

A shopper shows a photo of a product the catalogue does not have and asks "what is this used for?", "which
season is it for?" or "what type of article is this?". The answer is an attribute entity of the catalogue graph
(a ``Usage``, ``Season`` or ``ArticleType`` node). Three models answer the same questions about the same unseen
photos (:mod:`kgmm.bench.photo_qa` measures what each modality adds):

- ``image+graph``: the photo is mapped into the graph as weighted seeds, the catalogue products it resembles,
  and :class:`kgmm.nn.qa.GraphQA` (one propagation step by default) reads the question and follows the relation
  it asks for from those seeds to the attribute entities; a direct image head (the ``graph removed`` model
  below) is fused late with a weight chosen on validation (0 leaves the graph alone).
- ``image removed``: the same GraphQA trained and asked with seeds that carry no image: spread uniformly over the
  products (every catalogue product, or the photographed training products, whichever validates better): the
  graph's prior.
- ``graph removed``: question + image features only: a :mod:`kgmm.nn.fusion` classifier (``early-concat`` of
  the pooled question and the photo's features) over the answer vocabulary, trained on the training photos.

Seeds of a photo (:func:`photo_seeds`, :func:`title_seeds`) mix two matches into the graph, ``seed_mix`` of the
first and the rest of the second:

- ``photos``: the photo's ``neighbours`` most similar training photos (cosine of the vision encoder's features);
  each is a product of the graph.
- ``titles``: the ``neighbours`` catalogue products whose title is nearest the photo in an image-text space
  trained with :func:`kgmm.tasks.align.train_align` on the training photos and their titles only.

Weights are a softmax of the similarities at ``temperature``. :func:`run_fold` trains the three models on some
photos and scores the questions about others; a scored photo's product seeds nothing, and a photo's own product is
never among its seeds. The answer vocabulary is the set of entities that answer some training question (the same
for every model); an answer outside it counts as wrong.
"""

from __future__ import annotations

import csv
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgmm.errors import SourceError, ValidationError
from kgmm.utils import batched

DEFAULT_NEIGHBOURS = 10
DEFAULT_TEMPERATURE = 0.05
DEFAULT_STEPS = 1
DEFAULT_GNN_EPOCHS = 4
DEFAULT_HEAD_EPOCHS = 120
PRIORS = ("photographed", "catalogue")  # seeds of the image-removed model: the training photos' products, or all
REQUIRED_COLUMNS = ("id", "articleType", "usage", "season", "productDisplayName")
ALIGN_COLUMNS = ("articleType", "usage", "season", "gender", "masterCategory", "subCategory", "baseColour")
SCORE_FLOOR = 1e-3  # added to graph scores before the log, so an answer the seeds never reach is unlikely, not -inf
IMAGE_SCALE = 10.0  # L2-normalised photo features are scaled to this norm for the head
TRAIN_BATCH = 64
GNN_HIDDEN = 64
GNN_LR = 3e-3
HEAD_HIDDEN = 256
HEAD_DROPOUT = 0.5
HEAD_LR = 3e-3
HEAD_WEIGHT_DECAY = 1e-2
PRIOR_STEPS = 40


@dataclass(frozen=True)
class QuestionType:
    """A kind of question about a photo: its answer is the photo's product's ``entity_type`` attribute (read with
    :func:`kgmm.sources.datasets.fashion_attributes`), an entity of the catalogue graph.

    Args:
        name (str): the key results are reported under.
        entity_type (str): the graph's entity type of the answers (:data:`kgmm.sources.datasets.FASHION_ATTRIBUTES`).
        paraphrases (tuple of str): the wordings the question is asked in (training draws one per photo and epoch;
            evaluation asks them all).
    """

    name: str
    entity_type: str
    paraphrases: tuple[str, ...]


QUESTION_TYPES = (
    QuestionType("usage", "Usage", ("what is this used for?", "what is the usage of this product?",
                                    "what occasion is this for?", "what would you use this for?")),
    QuestionType("season", "Season", ("which season is it for?", "what season would you wear this in?",
                                      "in which season is this worn?", "what time of year is this product for?")),
    QuestionType("article_type", "ArticleType", ("what type of article is this?", "what kind of product is this?",
                                                 "what is this item?", "which article type is shown?")),
)


@dataclass
class Examples:
    """Questions about photos: the photo (a position in ``products``), the question type, the paraphrase (a position
    in the flat paraphrase list) and the answer (a position in the answer vocabulary, -1 when outside it)."""

    photo: Any
    kind: Any
    paraphrase: Any
    answer: Any

    def __len__(self) -> int:
        return int(self.photo.numel())

    def take(self, index) -> Examples:
        return Examples(self.photo[index], self.kind[index], self.paraphrase[index], self.answer[index])


@dataclass
class _Seeds:
    """Each photo's seeds: ``nodes`` and ``weights`` ``[P, K]`` (weights of a row sum to 1; padding weighs 0)."""

    nodes: Any
    weights: Any

    def mix(self, other: _Seeds, share: float) -> _Seeds:
        import torch

        return _Seeds(torch.cat([self.nodes, other.nodes], dim=1),
                      torch.cat([self.weights * share, other.weights * (1.0 - share)], dim=1))

    def dense(self, photos, num_nodes: int):
        """``[num_nodes, len(photos)]`` seed scores of ``photos`` (the columns of a GraphQA batch)."""
        import torch

        nodes, weights = self.nodes[photos], self.weights[photos]
        columns = torch.arange(nodes.size(0)).unsqueeze(1).expand_as(nodes)
        out = torch.zeros(num_nodes, nodes.size(0))
        return out.index_put_((nodes.reshape(-1), columns.reshape(-1)), weights.reshape(-1), accumulate=True)


@dataclass
class _Context:
    """Everything the folds share: the graph, the photos' features and answers, the questions' encodings."""

    data: Any
    num_relations: int
    photo_node: Any  # [P] the graph node of each photographed product, -1 for a held-out one
    images: Any  # [P, d] L2-normalised vision features
    paths: list[Path]
    products: list[dict[str, str]]
    has_answer: Any  # [P, T] whether the photo's product has a value of each question type
    answer_class: Any  # [P, T] position of that value's entity in the answer vocabulary, -1 when outside it
    candidates: Any  # [V] answer vocabulary nodes
    candidate_kind: Any  # [V] question type of each
    question_tokens: Any  # [Q, L, d] paraphrase token states
    question_mask: Any  # [Q, L]
    question_vectors: Any  # [Q, d] pooled paraphrase embeddings
    paraphrase_kind: Any  # [Q] question type of each paraphrase
    title_nodes: Any  # [M] graph products with a title
    title_features: Any  # [M, d] their sentence embeddings
    image_encoder: Any
    text_encoder: Any


def read_fashion_folder(data_dir: str | Path) -> tuple[list[dict[str, str]], list[dict[str, str]], list[Path]]:
    """Read a fashion folder: the photographed products, the catalogue and each product's photo path.

    Returns:
        ``(products, catalogue, paths)``: rows of ``products_train.csv`` and ``catalogue.csv``, and the photo of
        each product (its ``image`` column, else ``images/<id>.jpg``).

    Raises:
        ValidationError: the folder, a CSV or a needed column is missing.
        SourceError: a photo is missing (naming the first and the count).
    """
    from kgmm.tasks.fusion import read_products

    data_dir = Path(data_dir)
    layout = "catalogue.csv, products_train.csv and images/<id>.jpg"
    if not data_dir.is_dir():
        raise ValidationError(f"no fashion folder at {data_dir}; pass --data DIR holding {layout}")
    for name in ("products_train.csv", "catalogue.csv"):
        if not (data_dir / name).is_file():
            raise ValidationError(f"no {name} in {data_dir}; pass the fashion folder ({layout})")
    rows = {}
    for name in ("products_train.csv", "catalogue.csv"):
        path = data_dir / name
        with path.open(encoding="utf-8", newline="") as handle:
            header = next(csv.reader(handle), [])
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:
            raise ValidationError(f"{path} lacks the column(s) {', '.join(missing)}; expected the fashion catalogue "
                                  f"columns ({', '.join(REQUIRED_COLUMNS)}, ...)")
        rows[name] = read_products(path)
    products = rows["products_train.csv"]
    if len(products) < 4:
        raise ValidationError(f"{data_dir / 'products_train.csv'} has {len(products)} product(s); photo QA needs "
                              "at least 4 photographed products (2 or more per article type)")
    paths = [data_dir / (row.get("image") or f"images/{row['id'].strip()}.jpg") for row in products]
    absent = [path for path in paths if not path.is_file()]
    if absent:
        raise SourceError(f"{len(absent)} product photo(s) missing, the first {absent[0]}; every row needs its "
                          "photo (the image column, else images/<id>.jpg)", path=str(data_dir / "products_train.csv"))
    return products, rows["catalogue.csv"], paths


def held_out_graph(catalogue: list[dict[str, str]], products: list[dict[str, str]], held_out: Sequence[int]):
    """The catalogue graph without the held-out products (their rows skipped: no node, no edge); a training
    product missing from the catalogue joins it with its own row.

    Args:
        catalogue (list of dict): ``catalogue.csv`` rows.
        products (list of dict): the photographed products (``products_train.csv`` rows).
        held_out (list of int): positions in ``products`` of the products the graph must not have.

    Returns:
        ``(data, titles, about)``: the graph, product node -> title, and its make-up.
    """
    from kgmm.tasks.fusion import catalogue_graph

    held_ids = {products[i]["id"].strip() for i in held_out}
    catalogue_ids = {row["id"].strip() for row in catalogue}
    kept = [row for row in catalogue if row["id"].strip() not in held_ids]
    kept += [row for row in products if row["id"].strip() not in held_ids | catalogue_ids]
    data, product_node = catalogue_graph(kept, [])
    titles = {product_node[row["id"].strip()]: (row.get("productDisplayName") or "").strip() for row in kept}
    keys = set(data.entity_vocab.keys)
    about = {"nodes": int(data.num_nodes), "edges": int(data.edge_index.size(1)), "products": len(product_node),
             "relations": list(data.relation_vocab), "catalogue_rows_skipped": len(catalogue_ids & held_ids),
             "held_out_products_in_graph": sum(1 for product_id in held_ids if f"fashion:product:{product_id}" in keys)}
    return data, titles, about


def build_context(data, titles: dict[int, str], products: list[dict[str, str]], paths: list[Path],
                  train: Sequence[int], image_encoder, text_encoder, progress: bool) -> _Context:
    """Encode the photos, the paraphrases and the graph products' titles; find each photo's answer nodes and the
    answer vocabulary (the entities answering some training question).

    Args:
        data (Data): the catalogue graph (:func:`held_out_graph`).
        titles (dict): product node -> title.
        products (list of dict): the photographed products.
        paths (list of Path): the photo of each product.
        train (list of int): positions in ``products`` of the training photos.
        image_encoder: what :func:`kgmm.nn.vision.encode_image_files` takes (None: EfficientNet-Lite0).
        text_encoder: a :class:`kgmm.nn.text.TextEncoder` or a stand-in (None: all-MiniLM-L6-v2).
        progress (bool): print what runs.

    Returns:
        the context every fold shares.
    """
    import torch

    from kgmm.nn.vision import encode_image_files
    from kgmm.schema import entity_id
    from kgmm.sources.datasets import fashion_attributes
    from kgmm.tasks.fusion import encode_titles

    index = data.entity_vocab.index_map()
    photo_node = torch.tensor([index.get(f"fashion:product:{row['id'].strip()}", -1) for row in products])
    answers = torch.full((len(products), len(QUESTION_TYPES)), -1, dtype=torch.long)
    has_answer = torch.zeros(len(products), len(QUESTION_TYPES), dtype=torch.bool)
    for position, row in enumerate(products):
        attributes = fashion_attributes(row)
        for t, kind in enumerate(QUESTION_TYPES):
            value = attributes.get(kind.entity_type)
            if value is not None:
                has_answer[position, t] = True
                answers[position, t] = index.get(entity_id("retail", kind.entity_type, value), -1)
    train_answers = answers[torch.as_tensor(list(train), dtype=torch.long)]
    candidates, candidate_kind = [], []
    for t in range(len(QUESTION_TYPES)):
        nodes = sorted(set(train_answers[:, t].tolist()) - {-1})
        candidates += nodes
        candidate_kind += [t] * len(nodes)
    position_of = {node: position for position, node in enumerate(candidates)}
    answer_class = answers.clone().apply_(lambda node: position_of.get(node, -1))

    if progress:
        print(f"encoding {len(paths)} photos ...", flush=True)
    images = torch.nn.functional.normalize(encode_image_files(paths, image_encoder, progress=progress).float(), dim=1)
    if text_encoder is None:
        from kgmm.nn.text import TextEncoder

        text_encoder = TextEncoder()
    paraphrases = [text for kind in QUESTION_TYPES for text in kind.paraphrases]
    tokens, mask = text_encoder.encode_tokens(paraphrases)
    vectors = text_encoder.encode(paraphrases)
    title_nodes = sorted(node for node, title in titles.items() if title)
    if progress:
        print(f"encoding {len(title_nodes):,} catalogue titles (cached after the first run) ...", flush=True)
    title_features = encode_titles([titles[node] for node in title_nodes], text_encoder, progress)
    return _Context(
        data=data, num_relations=len(data.relation_vocab), photo_node=photo_node, images=images, paths=paths,
        products=products, has_answer=has_answer, answer_class=answer_class,
        candidates=torch.tensor(candidates, dtype=torch.long),
        candidate_kind=torch.tensor(candidate_kind, dtype=torch.long), question_tokens=tokens.float(),
        question_mask=mask.bool(), question_vectors=vectors.float(),
        paraphrase_kind=torch.tensor([t for t, kind in enumerate(QUESTION_TYPES) for _ in kind.paraphrases]),
        title_nodes=torch.tensor(title_nodes, dtype=torch.long), title_features=title_features.float(),
        image_encoder=image_encoder, text_encoder=text_encoder)


def _examples(context: _Context, photos: Sequence[int], rng: random.Random | None = None) -> Examples:
    """Questions about ``photos``: every paraphrase of every question type the photo has an answer to (the answer
    may be outside the vocabulary: -1), or with ``rng`` one drawn paraphrase each, answers inside it only."""
    import torch

    rows = []
    for photo in photos:
        for t, kind in enumerate(QUESTION_TYPES):
            answer = int(context.answer_class[photo, t])
            if not context.has_answer[photo, t] or (rng is not None and answer < 0):
                continue
            first = sum(len(k.paraphrases) for k in QUESTION_TYPES[:t])
            chosen = [rng.randrange(len(kind.paraphrases))] if rng is not None else range(len(kind.paraphrases))
            rows += [(photo, t, first + offset, answer) for offset in chosen]
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    return Examples(*(torch.tensor(column, dtype=torch.long) for column in columns))


def nearest(queries, references, k: int, temperature: float, exclude=None):
    """The ``k`` references most similar to each query (cosine of L2-normalised rows) and softmax weights.

    Args:
        queries (Tensor): ``[B, d]`` L2-normalised.
        references (Tensor): ``[M, d]`` L2-normalised.
        k (int): neighbours per query (at most ``M``).
        temperature (float): softmax temperature over the similarities.
        exclude (Tensor, optional): ``[B, M]`` bool, True where a reference may not be a query's neighbour (its
            own product, a product absent from the graph); an excluded neighbour that still makes the top ``k``
            (fewer than ``k`` allowed) weighs 0.

    Returns:
        ``(positions, weights)``: ``[B, k]`` reference positions and weights (rows sum to 1).
    """
    similarity = queries @ references.t()
    if exclude is not None:
        similarity = similarity.masked_fill(exclude, float("-inf"))
    top = similarity.topk(min(k, references.size(0)), dim=1)
    weights = (top.values / temperature).softmax(dim=1).nan_to_num(0.0)
    return top.indices, weights


def photo_seeds(context: _Context, queries: Sequence[int], references: Sequence[int], k: int,
                temperature: float) -> tuple[_Seeds, Any]:
    """Seeds from similar photos: each query photo's ``k`` nearest ``references`` (training photos, never itself),
    as their products' graph nodes.

    Returns:
        ``(seeds, votes)``: the seeds of every photo (rows of ``queries`` filled, others empty) and the reference
        vote ``[P, T, V]`` of the same neighbours' answers read from ``products_train.csv`` (no graph).
    """
    import torch

    queries = torch.as_tensor(list(queries), dtype=torch.long)
    references = torch.as_tensor(list(references), dtype=torch.long)
    own = queries.unsqueeze(1) == references.unsqueeze(0)
    positions, weights = nearest(context.images[queries], context.images[references], k, temperature, own)
    neighbours = references[positions]
    count = len(context.products)
    nodes = torch.zeros(count, positions.size(1), dtype=torch.long)
    seed_weights = torch.zeros(count, positions.size(1))
    nodes[queries] = context.photo_node[neighbours].clamp(min=0)
    seed_weights[queries] = weights * (context.photo_node[neighbours] >= 0)
    votes = torch.zeros(count, len(QUESTION_TYPES), context.candidates.numel())
    for t in range(len(QUESTION_TYPES)):
        classes = context.answer_class[neighbours, t]
        known = classes >= 0
        rows = queries.unsqueeze(1).expand_as(classes)[known]
        votes[:, t].index_put_((rows, classes[known]), weights[known], accumulate=True)
    return _Seeds(nodes, seed_weights), votes


def title_seeds(context: _Context, fit: Sequence[int], queries: Sequence[int], excluded_nodes, k: int,
                temperature: float, *, seed: int, epochs: int | None) -> _Seeds:
    """Seeds from similar titles: align photos with their titles on the ``fit`` photos only
    (:func:`kgmm.tasks.align.train_align`), then take each query photo's ``k`` graph products whose title is
    nearest it in that space, never its own product nor one of ``excluded_nodes``."""
    import torch

    from kgmm.tasks.align import load_align_model, train_align

    with tempfile.TemporaryDirectory(prefix="kgmm-photo-qa-") as folder:
        pairs = Path(folder) / "pairs.csv"
        columns = [column for column in ALIGN_COLUMNS if column in context.products[0]]
        with pairs.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["image", "productDisplayName", *columns])
            writer.writeheader()
            for photo in fit:
                row = context.products[photo]
                writer.writerow({"image": str(context.paths[photo].resolve()),
                                 "productDisplayName": row.get("productDisplayName") or "",
                                 **{column: row.get(column) or "" for column in columns}})
        train_align(pairs, Path(folder) / "model", holdout=0.0, seed=seed, epochs=epochs,
                    vision_model=context.image_encoder, text_model=context.text_encoder, progress=False)
        aligned = load_align_model(Path(folder) / "model", vision_model=context.image_encoder,
                                   text_model=context.text_encoder)
    queries = torch.as_tensor(list(queries), dtype=torch.long)
    with torch.no_grad():
        photos = aligned.embed_image_files([context.paths[int(q)] for q in queries])
        titles = aligned.module.embed_text(context.title_features)
    exclude = torch.isin(context.title_nodes, torch.as_tensor(excluded_nodes, dtype=torch.long)).unsqueeze(0)
    exclude = exclude | (context.photo_node[queries].unsqueeze(1) == context.title_nodes.unsqueeze(0))
    positions, weights = nearest(photos, titles, k, temperature, exclude)
    nodes = torch.zeros(len(context.products), positions.size(1), dtype=torch.long)
    seed_weights = torch.zeros(len(context.products), positions.size(1))
    nodes[queries] = context.title_nodes[positions]
    seed_weights[queries] = weights
    return _Seeds(nodes, seed_weights)


def propagation_graph(data, seed_nodes, steps: int, num_relations: int):
    """The :class:`kgmm.nn.qa.RelationGraph` of the edges ``steps`` propagation steps from ``seed_nodes`` can use
    (those with an end within ``steps - 1`` hops of a seed): the same scores as the whole graph, much faster."""
    import torch

    from kgmm.nn.qa import RelationGraph

    head, tail = data.edge_index
    reached = torch.zeros(int(data.num_nodes), dtype=torch.bool)
    reached[torch.as_tensor(seed_nodes, dtype=torch.long)] = True
    for _ in range(steps - 1):
        touching = reached[head] | reached[tail]
        reached[head[touching]] = True
        reached[tail[touching]] = True
    keep = reached[head] | reached[tail]
    return RelationGraph(data.edge_index[:, keep], data.edge_type[keep], int(data.num_nodes), num_relations)


def _reasoner(context: _Context, steps: int, seed: int):
    import torch

    from kgmm.nn.qa import GraphQA

    torch.manual_seed(seed)
    return GraphQA(context.num_relations, context.question_tokens.size(-1), steps=steps, fusion="early-concat",
                   hidden_channels=GNN_HIDDEN, dropout=0.1)


def _question_batch(context: _Context, paraphrases):
    tokens, mask = context.question_tokens[paraphrases], context.question_mask[paraphrases]
    width = max(1, int(mask.sum(1).max()))
    return {"question": tokens[:, :width]}, {"question": mask[:, :width]}


def _train_graph_model(context: _Context, graph, seeds: _Seeds, fit: Sequence[int], *, steps: int, epochs: int,
                       seed: int):
    """GraphQA trained on the ``fit`` photos' questions from their image-derived seeds (squared error on every
    node, as :func:`kgmm.tasks.qa.answer_loss`)."""
    import torch

    from kgmm.tasks.qa import answer_loss

    model = _reasoner(context, steps, seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=GNN_LR, weight_decay=0.01)
    rng = random.Random(seed)
    num_nodes = int(context.data.num_nodes)
    model.train()
    for _ in range(epochs):
        examples = _examples(context, fit, rng)
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(rng.randrange(2**31)))
        for index in batched(order, TRAIN_BATCH):
            batch = examples.take(index)
            target = torch.zeros(num_nodes, len(batch))
            target[context.candidates[batch.answer], torch.arange(len(batch))] = 1.0
            features, masks = _question_batch(context, batch.paraphrase)
            reasoning = model(graph, seeds.dense(batch.photo, num_nodes), features, masks)
            loss = answer_loss(reasoning.scores, target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def _graph_scores(context: _Context, model, graph, seeds: _Seeds, examples: Examples):
    """``[E, V]`` GraphQA scores of the answer vocabulary for each question."""
    import torch

    parts = []
    with torch.no_grad():
        for index in batched(torch.arange(len(examples)), 256):
            batch = examples.take(index)
            features, masks = _question_batch(context, batch.paraphrase)
            reasoning = model(graph, seeds.dense(batch.photo, int(context.data.num_nodes)), features, masks)
            parts.append(reasoning.scores[context.candidates].t())
    return torch.cat(parts) if parts else torch.zeros(0, context.candidates.numel())


def _prior_nodes(context: _Context, prior: str, fit: Sequence[int]):
    import torch

    if prior == "catalogue":
        product_type = context.data.entity_type_vocab.index("Product")
        return (context.data.node_type == product_type).nonzero().view(-1)
    nodes = context.photo_node[torch.as_tensor(list(fit), dtype=torch.long)]
    return nodes[nodes >= 0]


def _prior_scores(context: _Context, prior: str, fit: Sequence[int], examples: Examples, *, steps: int, seed: int):
    """The image-removed model: GraphQA trained and asked with seeds spread uniformly over the ``prior`` products.

    Every photo has the same seeds, so training runs on the distinct paraphrases against the ``fit`` photos'
    answer frequencies (the same squared error as over every photo, up to a constant). Returns ``[E, V]`` scores.
    """
    import torch

    from kgmm.tasks.qa import answer_loss

    num_nodes = int(context.data.num_nodes)
    nodes = _prior_nodes(context, prior, fit)
    graph = propagation_graph(context.data, nodes, steps, context.num_relations)
    paraphrases = torch.arange(context.paraphrase_kind.numel())
    seeds = torch.zeros(num_nodes, paraphrases.numel())
    seeds[nodes] = 1.0 / max(1, nodes.numel())
    target = torch.zeros(num_nodes, paraphrases.numel())
    fit = torch.as_tensor(list(fit), dtype=torch.long)
    for q, t in enumerate(context.paraphrase_kind.tolist()):
        classes = context.answer_class[fit, t]
        classes = classes[classes >= 0]
        if classes.numel():
            share = torch.full((classes.numel(),), 1.0 / classes.numel())
            target[:, q].index_add_(0, context.candidates[classes], share)
    model = _reasoner(context, steps, seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=GNN_LR, weight_decay=0.01)
    features, masks = _question_batch(context, paraphrases)
    model.train()
    for _ in range(PRIOR_STEPS):
        loss = answer_loss(model(graph, seeds, features, masks).scores, target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        scores = model(graph, seeds, features, masks).scores[context.candidates].t()
    return scores[examples.paraphrase]


def _train_head(context: _Context, fit: Sequence[int], *, epochs: int, seed: int):
    """The graph-removed model: ``early-concat`` fusion of the pooled question and the photo over the answer
    vocabulary, trained with cross-entropy on the ``fit`` photos' questions."""
    import torch

    from kgmm.nn.fusion import build_fusion

    torch.manual_seed(seed)
    head = build_fusion("early-concat", {"question": context.question_vectors.size(1), "image": context.images.size(1)},
                        context.candidates.numel(), hidden_channels=HEAD_HIDDEN, dropout=HEAD_DROPOUT)
    optimiser = torch.optim.AdamW(head.parameters(), lr=HEAD_LR, weight_decay=HEAD_WEIGHT_DECAY)
    rng = random.Random(seed)
    head.train()
    for _ in range(epochs):
        examples = _examples(context, fit, rng)
        order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(rng.randrange(2**31)))
        for index in batched(order, 2 * TRAIN_BATCH):
            batch = examples.take(index)
            logits = head(_head_inputs(context, batch)).logits
            loss = torch.nn.functional.cross_entropy(logits, batch.answer, label_smoothing=0.1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return head.eval()


def _head_inputs(context: _Context, examples: Examples) -> dict:
    return {"question": context.question_vectors[examples.paraphrase],
            "image": context.images[examples.photo] * IMAGE_SCALE}


def _head_scores(context: _Context, head, examples: Examples):
    """``[E, V]`` log-probabilities of the answer vocabulary for each question."""
    import torch

    with torch.no_grad():
        return head(_head_inputs(context, examples)).logits.log_softmax(dim=-1)


def combine(graph_scores, head_log_probs, head_weight: float):
    """image+graph: the log of the graph's answer scores plus ``head_weight`` times the image head's.

    Args:
        graph_scores (Tensor): ``[E, V]`` GraphQA scores of the answer vocabulary.
        head_log_probs (Tensor): ``[E, V]`` log-probabilities of the image head.
        head_weight (float): weight of the image head (0 leaves the graph alone).

    Returns:
        Tensor: ``[E, V]`` combined scores.
    """
    return (graph_scores + SCORE_FLOOR).log() + head_weight * head_log_probs


def run_fold(context: _Context, fit: Sequence[int], scored: Sequence[int], *, seed_mixes: Sequence[float],
             priors: Sequence[str] = PRIORS, neighbours: int, temperature: float, steps: int, gnn_epochs: int,
             head_epochs: int, align_epochs: int | None, seed: int, progress: bool) -> dict:
    """Train every model on the ``fit`` photos and score the questions about the ``scored`` photos, whose products
    may seed nothing (as the held-out ones, which the graph lacks).

    Args:
        context: what :func:`build_context` returns.
        fit (list of int): the photos to train on.
        scored (list of int): the photos whose questions are scored.
        seed_mixes (list of float): shares of photo-matched seeds to score with (the rest from similar titles).
        priors (list of str, optional): seeds of the image-removed model to score with (default both
            :data:`PRIORS`).
        neighbours (int): seeds per match of a photo.
        temperature (float): softmax temperature of the seed weights.
        steps (int): GraphQA propagation steps.
        gnn_epochs (int): passes over the training questions for GraphQA.
        head_epochs (int): passes over the training photos for the image head.
        align_epochs (int or None): most epochs of the image-title alignment.
        seed (int): the models' initialisation.
        progress (bool): print what runs.

    Returns:
        dict with ``examples`` (the scored questions) and their ``[E, V]`` scores: ``graph`` (per seed mix),
        ``prior`` (per prior), ``head`` and ``knn`` (the nearest training photos' label vote).
    """
    import torch

    if progress:
        print(f"  fold: training on {len(fit)} photos, scoring {len(scored)} ...", flush=True)
    examples = _examples(context, scored)
    everyone = [*fit, *scored]
    excluded = context.photo_node[torch.as_tensor(list(scored), dtype=torch.long)]
    excluded = excluded[excluded >= 0]
    by_photo, votes = photo_seeds(context, everyone, fit, neighbours, temperature)
    seeds = {1.0: by_photo}
    if any(share < 1.0 for share in seed_mixes):
        by_title = title_seeds(context, fit, everyone, excluded, neighbours, temperature, seed=seed,
                               epochs=align_epochs)
        seeds = {share: by_photo.mix(by_title, share) if share > 0 else by_title for share in seed_mixes}
    trained_mix = sorted(seed_mixes)[len(seed_mixes) // 2]  # one GraphQA per fold reads every mix's seeds
    used = torch.cat([seeds[share].nodes[seeds[share].weights > 0] for share in seed_mixes])
    graph = propagation_graph(context.data, used.unique(), steps, context.num_relations)
    model = _train_graph_model(context, graph, seeds[trained_mix], fit, steps=steps, epochs=gnn_epochs, seed=seed)
    head = _train_head(context, fit, epochs=head_epochs, seed=seed)
    return {
        "examples": examples,
        "graph": {share: _graph_scores(context, model, graph, seeds[share], examples) for share in seed_mixes},
        "prior": {prior: _prior_scores(context, prior, fit, examples, steps=steps, seed=seed) for prior in priors},
        "head": _head_scores(context, head, examples),
        "knn": votes[examples.photo, examples.kind],
    }


__all__ = ["PRIORS", "QUESTION_TYPES", "Examples", "QuestionType", "build_context", "combine", "held_out_graph",
           "nearest", "photo_seeds", "propagation_graph", "read_fashion_folder", "run_fold", "title_seeds"]
