"""The fusion benchmark on a tiny generated fashion folder: result structure, the plot, and no label leakage
(neither of the evaluated products' labels nor, through the graph, of a catalogue training row's own label)."""

from __future__ import annotations

import csv
import hashlib
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kgmm.bench.fusion import fusion_benchmark
from kgmm.errors import ValidationError
from kgmm.nn.fusion import FUSION_STRATEGIES
from kgmm.tasks.fusion import (
    brand_from_title,
    catalogue_graph,
    graph_tokens,
    read_products,
    sample_catalogue,
    stratified_folds,
)
from kgmm.tasks.metrics import macro_f1

COLUMNS = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage",
           "productDisplayName"]
# article type -> (master, sub, gender, brand, colour, RGB of its photos)
KINDS = {
    "Shirts": ("Apparel", "Topwear", "Men", "Arrow", "Blue", (30, 60, 200)),
    "Heels": ("Footwear", "Shoes", "Women", "Catwalk", "Red", (200, 30, 30)),
    "Watches": ("Accessories", "Watches", "Unisex", "Titan", "Black", (20, 20, 20)),
}
PHOTOGRAPHED_PER_KIND = 8


class ColourEncoder:
    """Stands in for EfficientNet: the mean colour of the photo (3-d), plus a constant."""

    dim = 4
    fingerprint = "test-mean-colour"

    def encode(self, images, *, batch_size=None, progress=False):
        rows = []
        for path in images:
            with Image.open(path) as image:
                pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32)).view(-1, 3)
            rows.append(torch.cat([pixels.mean(0) / 255.0, torch.ones(1)]))
        return torch.stack(rows)


class HashedWordsEncoder:
    """Stands in for MiniLM: hashed bag of lower-cased words, 32-d."""

    def encode(self, texts, *, batch_size=None, progress=False):
        out = torch.zeros(len(texts), 32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 32] += 1.0
        return out


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def product_row(product_id: int, kind: str, rng: random.Random) -> dict:
    master, sub, gender, brand, colour, _ = KINDS[kind]
    noun = kind.rstrip("s") if rng.random() < 0.5 else "Item"  # half the titles do not name the type
    return {"id": str(product_id), "gender": gender, "masterCategory": master, "subCategory": sub,
            "articleType": kind, "baseColour": colour, "season": rng.choice(["Summer", "Fall"]), "year": "2012",
            "usage": rng.choice(["Casual", ""]), "productDisplayName": f"{brand} {gender} {colour} {noun}"}


@pytest.fixture()
def fashion_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("KGMM_CACHE_DIR", str(tmp_path / "cache"))
    rng = random.Random(0)
    folder = tmp_path / "fashion"
    (folder / "images").mkdir(parents=True)
    catalogue, photographed = [], []
    for number, kind in enumerate(sorted(KINDS) * 30):
        catalogue.append(product_row(1000 + number, kind, rng))
    for number, kind in enumerate(sorted(KINDS) * PHOTOGRAPHED_PER_KIND):
        row = product_row(5000 + number, kind, rng)
        red, green, blue = KINDS[kind][5]
        shade = rng.randint(-20, 20)
        Image.new("RGB", (24, 32), (max(0, red + shade), max(0, green + shade), max(0, blue + shade))).save(
            folder / "images" / f"{row['id']}.jpg", format="JPEG")
        photographed.append(dict(row, image=f"images/{row['id']}.jpg"))
        if number % 2 == 0:  # half the photographed products are catalogue rows too, with their labels
            catalogue.append(row)
    write_csv(folder / "catalogue.csv", catalogue, COLUMNS)
    write_csv(folder / "products_train.csv", photographed, [*COLUMNS, "image"])
    return folder


def run(folder: Path, **options) -> dict:
    return fusion_benchmark(folder, epochs=12, image_encoder=ColourEncoder(), text_encoder=HashedWordsEncoder(),
                            **options)


def test_fusion_benchmark_reports_every_strategy_and_modality_and_writes_a_png(fashion_dir, tmp_path):
    result = run(fashion_dir, out_png=tmp_path / "plots" / "fusion.png")
    names = [row["name"] for row in result["results"]]
    assert names == ["image only", "title only", "graph only", *FUSION_STRATEGIES]
    assert result["products"] == 3 * PHOTOGRAPHED_PER_KIND and result["classes"] == 3
    assert result["folds"] == 4 and result["held_out"] == 3 * PHOTOGRAPHED_PER_KIND
    for row in result["results"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["macro_f1"] <= 1.0
        assert len(row["fold_accuracy"]) == 4
    assert [row["modalities"] for row in result["results"][:3]] == [["image"], ["title"], ["graph"]]
    assert result["dims"] == {"image": 4, "title": 32, "graph": result["graph"]["token_dim"]}
    assert result["graph"]["relations"] == ["FOR_GENDER", "HAS_COLOUR", "FOR_SEASON", "HAS_USAGE", "MADE_BY"]
    assert result["graph"]["withheld_catalogue_rows"] == 3 * PHOTOGRAPHED_PER_KIND // 2
    # 30 catalogue-only rows per kind train the models that have a title or graph; the photographed ones' rows never
    assert result["catalogue_training"] == {"per_type": 60, "rows": 3 * 30, "batch": 256}
    assert [row["catalogue_rows"] for row in result["results"]] == [0] + [3 * 30] * (len(names) - 1)
    assert result["best_single"]["name"].endswith(" only")
    assert result["best_fusion"]["name"] in FUSION_STRATEGIES
    png = Path(result["plot"])
    assert png == tmp_path / "plots" / "fusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fusion_benchmark_single_split(fashion_dir):
    result = run(fashion_dir, cross_validate=False, strategies=["early-concat"])
    assert result["folds"] == 1 and result["held_out"] == 3 * 2  # round(0.25 * 8) of each type
    assert [row["name"] for row in result["results"]][-1] == "early-concat"


def test_fusion_benchmark_never_reads_the_evaluated_products_labels(fashion_dir):
    before = run(fashion_dir, strategies=["early-concat", "late"])
    path = fashion_dir / "catalogue.csv"
    rows = read_products(path)
    evaluated = {row["id"] for row in read_products(fashion_dir / "products_train.csv")}
    rng = random.Random(1)
    for row in rows:
        if row["id"] in evaluated:  # give the photographed products' catalogue rows wrong labels
            kind = rng.choice(sorted(KINDS))
            row["articleType"], row["masterCategory"], row["subCategory"] = kind, *KINDS[kind][:2]
            row["articleType"] = "Mislabelled " + row["articleType"]
    write_csv(path, rows, COLUMNS)
    after = run(fashion_dir, strategies=["early-concat", "late"])
    assert [(r["accuracy"], r["macro_f1"]) for r in after["results"]] == \
        [(r["accuracy"], r["macro_f1"]) for r in before["results"]]


def test_fusion_benchmark_without_catalogue_rows_trains_on_photographed_products_only(fashion_dir):
    result = run(fashion_dir, catalogue_per_type=0, strategies=["late"])
    assert result["catalogue_training"]["rows"] == 0
    assert [row["catalogue_rows"] for row in result["results"]] == [0, 0, 0, 0]


def test_fusion_benchmark_rejects_bad_catalogue_options(fashion_dir):
    with pytest.raises(ValidationError, match="catalogue_per_type must be >= 0"):
        run(fashion_dir, catalogue_per_type=-1)
    with pytest.raises(ValidationError, match="catalogue_batch must be >= 1"):
        run(fashion_dir, catalogue_batch=0)


def test_sample_catalogue_caps_each_type_and_never_picks_a_photographed_product(fashion_dir):
    catalogue = read_products(fashion_dir / "catalogue.csv")
    products = read_products(fashion_dir / "products_train.csv")
    picked = sample_catalogue(catalogue, products, ["Heels", "Shirts"], 10, seed=0)
    assert sorted(Counter(row["articleType"] for row in picked).items()) == [("Heels", 10), ("Shirts", 10)]
    assert not {row["id"] for row in picked} & {row["id"] for row in products}
    evaluated = {row["id"] for row in products}
    relabelled = [dict(row, articleType="Heels") if row["id"] in evaluated else row for row in catalogue]
    assert sample_catalogue(relabelled, products, ["Heels", "Shirts"], 10, seed=0) == picked
    assert len(sample_catalogue(catalogue, products, ["Heels"], 100, seed=0)) == 30  # all of a rarer type


def test_graph_tokens_leave_a_catalogue_products_own_labels_out(fashion_dir):
    catalogue = read_products(fashion_dir / "catalogue.csv")
    products = read_products(fashion_dir / "products_train.csv")
    trainee = catalogue[10]  # a training row of the catalogue (not the first of its article type)

    def trainee_tokens(rows, queries):
        data, product_node = catalogue_graph(rows, queries)
        return graph_tokens(data, [product_node[trainee["id"]]])[0]

    # Exactly the tokens it would get as a query product whose labels are withheld ...
    torch.testing.assert_close(trainee_tokens(catalogue, products), trainee_tokens(catalogue, [*products, trainee]))
    # ... so its own label does not reach them, while the other products' labels do.
    other_kind = next(kind for kind in KINDS if kind != trainee["articleType"])
    relabelled = [dict(row, articleType=other_kind) if row["id"] == trainee["id"] else row for row in catalogue]
    torch.testing.assert_close(trainee_tokens(relabelled, products), trainee_tokens(catalogue, products))
    neighbour = catalogue[13]  # same kind, so it shares the trainee's attribute entities
    relabelled = [dict(row, articleType=other_kind) if row["id"] == neighbour["id"] else row for row in catalogue]
    assert not torch.allclose(trainee_tokens(relabelled, products), trainee_tokens(catalogue, products))


def test_graph_tokens_ignore_query_labels_but_follow_other_products(fashion_dir):
    catalogue = read_products(fashion_dir / "catalogue.csv")
    products = read_products(fashion_dir / "products_train.csv")

    def tokens(rows):
        data, product_node = catalogue_graph(rows, products)
        return graph_tokens(data, [product_node[row["id"]] for row in products])

    features, mask, relations = tokens(catalogue)
    assert features.shape[:2] == (len(products), len(relations)) and mask.shape == features.shape[:2]
    assert not mask[:, relations.index("HAS_USAGE")].all()  # an empty usage is a masked token
    query_ids = {row["id"] for row in products}
    relabelled = [dict(row, articleType="Heels") if row["id"] in query_ids else row for row in catalogue]
    torch.testing.assert_close(tokens(relabelled)[0], features)
    swap = {"Shirts": "Heels", "Heels": "Shirts", "Watches": "Watches"}
    other = [dict(row, articleType=swap[row["articleType"]]) if row["id"] not in query_ids else row
             for row in catalogue]
    assert not torch.allclose(tokens(other)[0], features)


def test_stratified_folds_hold_each_product_out_once_and_keep_singletons_training():
    labels = ["a"] * 9 + ["b"] * 2 + ["c"]
    folds = stratified_folds(labels, 4, seed=0)
    held = sorted(p for _, held_out in folds for p in held_out)
    assert held == list(range(11))  # the lone "c" is never held out
    for train, held_out in folds:
        assert not set(train) & set(held_out) and 11 in train


def test_brand_from_title_and_macro_f1():
    assert brand_from_title("Peter England Men Party Blue Jeans") == "Peter England"
    assert brand_from_title("Men Blue Jeans") is None
    assert macro_f1([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    assert macro_f1([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 0.8) / 2)
