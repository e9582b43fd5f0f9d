"""The fashion catalogue as a knowledge graph: its graph, the graph features of a product, stratified splits
and title embeddings, shared by the fusion benchmark (:mod:`kgmm.bench.fusion`) and photo QA.

The graph (:func:`catalogue_graph`) is built from ``catalogue.csv`` with :func:`kgmm.graphdata.graph_to_data`:
one ``Product`` node per catalogue row and per photographed product, attribute entities linked to it
(``FOR_GENDER`` Gender, ``HAS_COLOUR`` Colour, ``FOR_SEASON`` Season, ``HAS_USAGE`` Usage, and ``MADE_BY``
Brand: the words of the title before its gender word), and label-bearing edges (``IS_A`` ArticleType,
``IN_CATEGORY`` SubCategory and Category) for catalogue products only.

No leakage: every photographed product (train and held-out alike) gets its attribute edges only, read from
``products_train.csv`` without its label columns; its ``IS_A``/``IN_CATEGORY`` edges are never created, and
its row in ``catalogue.csv`` (all 461 have one) is skipped whole, so its own article type, sub-category and
master category reach no input (the tests relabel those rows and get the same results). Withholding them for training products
too keeps train and held-out features alike (a training product's own label would otherwise sit in its
attribute neighbourhoods). The products' labels are used only as training targets and for scoring.

Graph features (:func:`graph_tokens`), two hops of propagation: labels flow from labelled catalogue products to
the attribute entities they link to (each entity gets the smoothed distribution of article types, sub-categories
and master categories of its labelled products, 2,000-odd products for a colour, a handful for a rare brand),
then from each attribute entity to the product. A product's ``graph`` modality is ``[R, d]``: per relation, the
log-distributions of its neighbour entity, that entity's log-degree and a one-hot of the relation; a missing
attribute is a masked token. The masked mean of these tokens is a naive-Bayes-like vote of the attributes.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

ATTRIBUTE_RELATIONS = {  # catalogue attribute (fashion_attributes entity type) -> relation
    "Gender": "FOR_GENDER", "Colour": "HAS_COLOUR", "Season": "FOR_SEASON", "Usage": "HAS_USAGE",
    "Brand": "MADE_BY",
}
LABEL_RELATIONS = {"ArticleType": "IS_A", "SubCategory": "IN_CATEGORY", "Category": "IN_CATEGORY"}
LABEL_TYPES = ("ArticleType", "SubCategory", "Category")
_GENDER_WORDS = frozenset("men men's mens women women's womens boys boy's boy girls girl's girl unisex kids".split())
SMOOTHING = 1.0  # pseudo-products of the global label distribution added to every entity's counts


def brand_from_title(title: str) -> str | None:
    """Return the words of a product title before its gender word ("Peter England Men Blue Jeans" -> "Peter
    England"), or None when no gender word follows the first word."""
    words = title.split()
    index = next((i for i, word in enumerate(words) if word.lower() in _GENDER_WORDS), None)
    return " ".join(words[:index]) if index else None


def read_products(path: str | Path) -> list[dict[str, str]]:
    """Read a fashion CSV (``catalogue.csv`` or ``products_*.csv``) into rows with an ``id``."""
    with Path(path).open(encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle) if (row.get("id") or "").strip()]


def catalogue_graph(catalogue: Sequence[dict[str, str]], query_products: Sequence[dict[str, str]]):
    """Build the catalogue knowledge graph as a PyG ``Data`` (see the module docstring).

    Args:
        catalogue (list of dict): ``catalogue.csv`` rows; their labels become ``IS_A``/``IN_CATEGORY`` edges.
            A row whose id is among ``query_products`` is skipped entirely (labels and all).
        query_products (list of dict): the products to describe; only their attribute edges are created, from
            these rows.

    Returns:
        ``(data, product_node)``: the graph and product id -> node index, for the query products and the catalogue
        products kept.
    """
    from kgmm.graphdata import graph_to_data
    from kgmm.schema import Entity, Relation, entity_id
    from kgmm.sources.datasets import fashion_attributes
    from kgmm.utils import paused_gc

    query_ids = {row["id"].strip() for row in query_products}
    entities: dict[str, Entity] = {}
    relations: list[Relation] = []

    def add_product(row: dict[str, str], *, labelled: bool) -> str:
        # Attribute edges always; label-bearing edges only for catalogue products that are not queries.
        product = f"fashion:product:{row['id'].strip()}"
        entities.setdefault(product, Entity(product, row["id"].strip(), "Product", "retail"))
        attributes = fashion_attributes(row)
        brand = brand_from_title(row.get("productDisplayName") or "")
        if brand:
            attributes["Brand"] = brand
        for entity_type, value in attributes.items():
            relation = ATTRIBUTE_RELATIONS.get(entity_type) or (LABEL_RELATIONS.get(entity_type) if labelled else None)
            if relation is None:
                continue
            tail = entity_id("retail", entity_type, value)
            entities.setdefault(tail, Entity(tail, value, entity_type, "retail"))
            relations.append(Relation(product, relation, tail, 1.0, "catalogue"))
        return product

    with paused_gc():
        # A query product's catalogue row is skipped whole, labels too.
        product_keys = {row["id"].strip(): add_product(row, labelled=True) for row in catalogue
                        if row["id"].strip() not in query_ids}
        product_keys |= {row["id"].strip(): add_product(row, labelled=False) for row in query_products}
        data = graph_to_data(entities.values(), relations)
    index = data.entity_vocab.index_map()
    return data, {product_id: index[key] for product_id, key in product_keys.items()}


def graph_tokens(data, product_nodes: Sequence[int]):
    """Propagate catalogue labels to attribute entities, then to ``product_nodes`` (see the module docstring).

    Leave-one-out: a labelled product among ``product_nodes`` (a catalogue product used as a training example)
    has its own labels taken out of its entities' counts, degrees and the prior, so its tokens are exactly those
    it would get as a query product whose labels were withheld. Unlabelled (query) products are unaffected.

    Args:
        data (Data): the graph of :func:`catalogue_graph`.
        product_nodes (list of int): the product nodes to describe, in token row order.

    Returns:
        ``(tokens, mask, relations)``: ``[N, R, d]`` float features, ``[N, R]`` bool (False: no such attribute)
        and the R relation names, in token order.
    """
    import torch

    entity_types = data.entity_type_vocab
    node_type = data.node_type
    num_nodes = int(data.num_nodes)
    head, tail = data.edge_index
    relation_of = data.edge_type
    relation_names = list(data.relation_vocab)
    columns = []
    for label_type in LABEL_TYPES:
        if label_type not in entity_types:
            continue
        type_index = entity_types.index(label_type)
        label_nodes = (node_type == type_index).nonzero().view(-1)
        class_of = torch.full((num_nodes,), -1, dtype=torch.long)
        class_of[label_nodes] = torch.arange(label_nodes.numel())
        is_label_edge = node_type[tail] == type_index
        product_label = torch.full((num_nodes,), -1, dtype=torch.long)
        product_label[head[is_label_edge]] = class_of[tail[is_label_edge]]
        columns.append((product_label, label_nodes.numel()))

    attribute_relations = [name for name in ATTRIBUTE_RELATIONS.values() if name in relation_names]
    product_nodes = torch.as_tensor(list(product_nodes), dtype=torch.long)
    position = torch.full((num_nodes,), -1, dtype=torch.long)
    position[product_nodes] = torch.arange(product_nodes.numel())
    parts, masks = [], []
    for relation_index, name in enumerate(attribute_relations):
        edges = relation_of == data.relation_vocab.index(name)
        edge_head, edge_tail = head[edges], tail[edges]
        is_query = position[edge_head] >= 0
        query_head, query_tail = edge_head[is_query], edge_tail[is_query]
        # How often each query edge's product links to that entity, and to any entity of this relation:
        # what its own label added to the entity's counts and to the prior.
        _, pair, pair_count = torch.unique(query_head * num_nodes + query_tail, return_inverse=True,
                                           return_counts=True)
        edges_of_product = torch.bincount(query_head, minlength=num_nodes)[query_head]
        features = []
        for product_label, num_classes in columns:
            labelled = product_label[edge_head] >= 0
            counts = torch.zeros(num_nodes, num_classes)
            counts.index_put_((edge_tail[labelled], product_label[edge_head[labelled]]),
                              torch.ones(int(labelled.sum())), accumulate=True)
            own_label = product_label[query_head]
            own = torch.zeros(query_head.numel(), num_classes)
            own[own_label >= 0, own_label[own_label >= 0]] = 1.0
            class_totals = counts.sum(0) - own * edges_of_product.unsqueeze(1)
            prior = (class_totals + 1.0) / (class_totals.sum(1, keepdim=True) + num_classes)
            local = counts[query_tail] - own * pair_count[pair].unsqueeze(1)
            degree = local.sum(1)
            distribution = (local + SMOOTHING * prior) / (degree.unsqueeze(1) + SMOOTHING)
            features.append(distribution.log())
        edge_features = torch.cat([*features, torch.log1p(degree).unsqueeze(1) / 10.0], dim=1)
        token = torch.zeros(product_nodes.numel(), edge_features.size(1) + len(attribute_relations))
        mask = torch.zeros(product_nodes.numel(), dtype=torch.bool)
        rows = position[query_head]
        token[rows, :edge_features.size(1)] = edge_features
        token[:, edge_features.size(1) + relation_index] = 1.0
        mask[rows] = True
        parts.append(token * mask.unsqueeze(1))
        masks.append(mask)
    return torch.stack(parts, dim=1), torch.stack(masks, dim=1), attribute_relations


def stratified_split(labels: Sequence[str], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    """Split positions by label: ``round(holdout * n)`` of each label held out, at least one kept for training."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        by_label[label].append(position)
    rng = random.Random(seed)
    train, held_out = [], []
    for label in sorted(by_label):
        positions = by_label[label]
        rng.shuffle(positions)
        count = min(len(positions) - 1, round(holdout * len(positions)))
        held_out += positions[:count]
        train += positions[count:]
    return sorted(train), sorted(held_out)


def stratified_folds(labels: Sequence[str], folds: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """Stratified k-fold cross-validation: ``folds`` (train, held-out) splits, each position held out once.

    A label carried by a single position is never held out (no model could learn it), so it trains in every fold.
    """
    by_label: dict[str, list[int]] = defaultdict(list)
    for position, label in enumerate(labels):
        by_label[label].append(position)
    rng = random.Random(seed)
    fold_of: dict[int, int] = {}
    offset = 0
    for label in sorted(by_label):
        positions = by_label[label]
        if len(positions) < 2:
            continue
        rng.shuffle(positions)
        for rank, position in enumerate(positions):
            fold_of[position] = (offset + rank) % folds
        offset += len(positions)  # rotate, so small labels do not all land in the first folds
    splits = []
    for fold in range(folds):
        held_out = sorted(p for p, f in fold_of.items() if f == fold)
        chosen = set(held_out)
        splits.append(([p for p in range(len(labels)) if p not in chosen], held_out))
    return splits


def sample_catalogue(catalogue: Sequence[dict[str, str]], products: Sequence[dict[str, str]],
                     article_types: Sequence[str], per_type: int, seed: int) -> list[dict[str, str]]:
    """Pick the catalogue rows that train beside the photographed products (they have no photo).

    A row whose id is a photographed product's is never picked (as in :func:`catalogue_graph`), so those rows'
    labels reach no model; the pick is made after they are set aside, so it does not depend on them either.

    Args:
        catalogue (list of dict): ``catalogue.csv`` rows.
        products (list of dict): the photographed products.
        article_types (list of str): the article types to predict; rows of other types are left out.
        per_type (int): at most this many rows of each article type (all of a rarer one), drawn at random, so
            the catalogue's common types do not swamp the balance of the photographed products.
        seed (int): the draw.

    Returns:
        The picked rows, in catalogue order.
    """
    product_ids = {row["id"].strip() for row in products}
    wanted = set(article_types)
    by_type: dict[str, list[int]] = defaultdict(list)
    for position, row in enumerate(catalogue):
        article_type = (row.get("articleType") or "").strip()
        if row["id"].strip() not in product_ids and article_type in wanted:
            by_type[article_type].append(position)
    rng = random.Random(seed)
    picked = []
    for article_type in sorted(by_type):
        positions = by_type[article_type]
        picked += positions if len(positions) <= per_type else rng.sample(positions, per_type)
    return [catalogue[position] for position in sorted(picked)]


def encode_titles(titles: list[str], text_encoder, progress: bool):
    """Embed each distinct title once: ``[len(titles), d]``; cached on disk for an encoder with a ``fingerprint``
    (the default all-MiniLM-L6-v2 is one), so a rerun does not encode the catalogue titles again."""
    import torch

    distinct = list(dict.fromkeys(titles))
    if text_encoder is None:
        from kgmm.nn.text import TextEncoder

        text_encoder = TextEncoder()
    if hasattr(text_encoder, "fingerprint"):
        from kgmm.graphdata.features import text_features, text_hash

        keys = [f"fashion:title:{text_hash(title)}" for title in distinct]
        vectors = text_features(keys, distinct, text_encoder, progress=progress)
    else:
        vectors = text_encoder.encode(distinct, progress=progress)
    row_of = {title: row for row, title in enumerate(distinct)}
    return vectors[torch.tensor([row_of[title] for title in titles], dtype=torch.long)].float()
