"""Photo QA on a tiny generated fashion folder: every variant per question type, held-out products kept out of the
graph and of training, seeds that match the photo, and clear errors for bad folders and options."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import kgmm.bench.photo_qa as benchmark
import kgmm.tasks.fusion as catalogue
import kgmm.tasks.photo_qa as photo_qa
from kgmm.bench.photo_qa import VARIANTS, photo_qa_benchmark, sign_test
from kgmm.errors import SourceError, ValidationError
from kgmm.tasks.photo_qa import QUESTION_TYPES, nearest, propagation_graph

COLUMNS = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year", "usage",
           "productDisplayName"]
# article type -> (master, sub, gender, brand, colour, usage, season, RGB of its photos)
KINDS = {
    "Shirts": ("Apparel", "Topwear", "Men", "Arrow", "Blue", "Formal", "Fall", (30, 60, 200)),
    "Heels": ("Footwear", "Shoes", "Women", "Catwalk", "Red", "Casual", "Summer", (200, 30, 30)),
    "Watches": ("Accessories", "Watches", "Unisex", "Titan", "Black", "Sports", "Winter", (20, 20, 20)),
}
PHOTOGRAPHED_PER_KIND = 8
HELD_OUT = 3 * round(0.25 * PHOTOGRAPHED_PER_KIND)
KIND_NAMES = [kind.name for kind in QUESTION_TYPES]


class ColourEncoder:
    """Stands in for EfficientNet: the mean colour of the photo, centred (3-d)."""

    dim = 3
    fingerprint = "test-centred-colour"

    def encode(self, images, *, batch_size=None, progress=False):
        rows = []
        for path in images:
            with Image.open(path) as image:
                pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32)).view(-1, 3)
            rows.append(pixels.mean(0) / 255.0 - 0.5)
        return torch.stack(rows)


class HashedWordsEncoder:
    """Stands in for MiniLM: hashed bag of lower-cased words (32-d), and one hashed vector per word as tokens."""

    dim = 32
    fingerprint = "test-hashed-words"
    path = "test-hashed-words"

    @staticmethod
    def _word(word: str) -> torch.Tensor:
        vector = torch.zeros(32)
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % 32] = 1.0
        return vector

    def encode(self, texts, *, batch_size=None, progress=False):
        rows = [sum((self._word(w) for w in text.lower().split()), torch.zeros(32)) for text in texts]
        return torch.nn.functional.normalize(torch.stack(rows), dim=1)

    def encode_tokens(self, texts, *, batch_size=None, max_length=None, progress=False):
        words = [text.lower().split() or [""] for text in texts]
        width = max(len(w) for w in words)
        states, mask = torch.zeros(len(texts), width, 32), torch.zeros(len(texts), width, dtype=torch.bool)
        for row, line in enumerate(words):
            for column, word in enumerate(line):
                states[row, column], mask[row, column] = self._word(word), True
        return states, mask


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def product_row(product_id: int, kind: str, rng: random.Random) -> dict:
    master, sub, gender, brand, colour, usage, season, _ = KINDS[kind]
    if rng.random() < 0.2:  # the catalogue is not perfectly regular: the graph's prior is not the answer
        season = rng.choice(["Spring", "Summer", "Fall", "Winter"])
    return {"id": str(product_id), "gender": gender, "masterCategory": master, "subCategory": sub,
            "articleType": kind, "baseColour": colour, "season": season, "year": "2012", "usage": usage,
            "productDisplayName": f"{brand} {gender} {colour} {kind.rstrip('s')} {product_id}"}


@pytest.fixture()
def fashion_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("KGMM_CACHE_DIR", str(tmp_path / "cache"))
    rng = random.Random(0)
    folder = tmp_path / "fashion"
    (folder / "images").mkdir(parents=True)
    catalogue, photographed = [], []
    for number, kind in enumerate(sorted(KINDS) * 12):
        catalogue.append(product_row(1000 + number, kind, rng))
    for number, kind in enumerate(sorted(KINDS) * PHOTOGRAPHED_PER_KIND):
        row = product_row(5000 + number, kind, random.Random(number))
        row["season"] = KINDS[kind][6]
        shade = rng.randint(-20, 20)
        Image.new("RGB", (24, 32), tuple(max(0, c + shade) for c in KINDS[kind][7])).save(
            folder / "images" / f"{row['id']}.jpg", format="JPEG")
        photographed.append(row)
        catalogue.append(row)  # every photographed product has its catalogue row, labels and all
    write_csv(folder / "catalogue.csv", catalogue, COLUMNS)
    write_csv(folder / "products_train.csv", photographed, COLUMNS)
    return folder


def run(folder: Path, **options) -> dict:
    settings = {"folds": 2, "neighbours": 3, "gnn_epochs": 2, "head_epochs": 20, "align_epochs": 3,
                "seed_mixes": (1.0,), "image_encoder": ColourEncoder(), "text_encoder": HashedWordsEncoder()}
    return photo_qa_benchmark(folder, **(settings | options))


def held_out_ids(folder: Path, seed: int = 0) -> set[str]:
    products = catalogue.read_products(folder / "products_train.csv")
    _, held_out = catalogue.stratified_split([row["articleType"] for row in products], 0.25, seed)
    return {products[i]["id"] for i in held_out}


def test_photo_qa_benchmark_reports_every_variant_per_question_type(fashion_dir):
    result = run(fashion_dir)
    assert list(result["results"]) == list(VARIANTS)
    for row in [*result["results"].values(), *result["reference"].values()]:
        assert list(row) == [*KIND_NAMES, "mean"]
        assert all(0.0 <= value <= 1.0 for value in row.values())
    assert result["train_photos"] == 3 * PHOTOGRAPHED_PER_KIND - HELD_OUT and result["held_out_photos"] == HELD_OUT
    paraphrases = {kind.name: len(kind.paraphrases) for kind in QUESTION_TYPES}
    assert result["counts"] == {name: {"photos": HELD_OUT, "questions": HELD_OUT * paraphrases[name],
                                       "answer_outside_vocabulary": 0} for name in KIND_NAMES}
    assert result["answer_vocabulary"] == {"usage": 3, "season": 3, "article_type": 3}
    assert result["graph"]["held_out_products_in_graph"] == 0
    assert result["graph"]["catalogue_rows_skipped"] == HELD_OUT
    assert result["graph"]["products"] == 3 * 12 + 3 * PHOTOGRAPHED_PER_KIND - HELD_OUT
    selection = result["selection"]
    assert selection["seed_mix"] == 1.0 and selection["head_weight"] in benchmark.HEAD_WEIGHTS
    assert selection["no_image_prior"] in photo_qa.PRIORS
    assert list(selection["validation"]) == [*VARIANTS, benchmark.REFERENCE]
    assert selection["validation_photos"] == result["train_photos"]
    assert set(result["beats_both"]) == set(KIND_NAMES)
    assert result["target_met"] == all(result["beats_both"].values())
    # Each kind has one colour, one usage and one photographed season: a photo and the graph answer it all.
    assert result["results"]["image+graph"] == {**dict.fromkeys(KIND_NAMES, 1.0), "mean": 1.0}
    # Without the photo, every question of a type gets one answer: right for one kind at most.
    assert all(result["results"]["image removed"][name] in (0.0, 0.3333) for name in KIND_NAMES)
    for name in KIND_NAMES:  # a perfect model is never worse on a photo
        for ablation in ("vs image removed", "vs graph removed"):
            test = result["paired_sign_test"][name][ablation]
            assert test["worse"] == 0 and test["p_value"] == sign_test(test["better"], 0)
        assert result["paired_sign_test"][name]["vs image removed"]["better"] >= HELD_OUT * 2 // 3
    json.dumps(result)


def test_sign_test_p_values():
    assert sign_test(8, 0) == 0.00781  # 2 / 2**8, three significant digits
    assert sign_test(10, 2) == sign_test(2, 10) == 0.0386  # 2 * (1 + 12 + 66) / 2**12
    assert sign_test(30, 0) == 1.86e-09
    assert sign_test(3, 3) == sign_test(0, 0) == 1.0


def test_held_out_products_never_reach_the_graph_or_any_training(fashion_dir, monkeypatch):
    held = held_out_ids(fashion_dir)
    products = catalogue.read_products(fashion_dir / "products_train.csv")
    held_positions = {i for i, row in enumerate(products) if row["id"] in held}
    graphs, folds, seeded = [], [], []
    build, run_fold = catalogue.catalogue_graph, benchmark.run_fold
    by_photo, by_title = photo_qa.photo_seeds, photo_qa.title_seeds

    def spy_graph(catalogue, query_products):
        graphs.append(([row["id"] for row in catalogue], list(query_products)))
        data, nodes = build(catalogue, query_products)
        graphs[-1] += (set(data.entity_vocab.keys),)
        return data, nodes

    def spy_fold(context, fit, scored, **options):
        folds.append((list(fit), list(scored)))
        return run_fold(context, fit, scored, **options)

    def spy_photo_seeds(context, queries, references, k, temperature):
        seeds, votes = by_photo(context, queries, references, k, temperature)
        seeded.append((len(folds) - 1, context, list(queries), seeds))
        assert set(references) == set(folds[-1][0])  # neighbours are training photos of this split only
        return seeds, votes

    def spy_title_seeds(context, fit, queries, excluded_nodes, k, temperature, **options):
        seeds = by_title(context, fit, queries, excluded_nodes, k, temperature, **options)
        assert list(fit) == folds[-1][0]  # the alignment trains on this split's training photos only
        seeded.append((len(folds) - 1, context, list(queries), seeds))
        return seeds

    monkeypatch.setattr(catalogue, "catalogue_graph", spy_graph)
    monkeypatch.setattr(benchmark, "run_fold", spy_fold)
    monkeypatch.setattr(photo_qa, "photo_seeds", spy_photo_seeds)
    monkeypatch.setattr(photo_qa, "title_seeds", spy_title_seeds)
    run(fashion_dir, seed_mixes=(1.0, 0.0))
    [(rows, queries, keys)] = graphs
    assert not held & set(rows) and queries == []
    assert not {f"fashion:product:{product_id}" for product_id in held} & keys
    *validation, final = folds
    assert len(validation) == 2 and set(final[1]) == held_positions
    for fit, _ in folds:
        assert not held_positions & set(fit)
    for fit, scored in validation:
        assert not held_positions & set(scored) and not set(fit) & set(scored)
    # No photo is seeded with its own product, nor with a product whose photo is scored in that split.
    assert [fold for fold, *_ in seeded][:4] == [0, 0, 1, 1]  # photo and title seeds in each validation fold
    for fold, context, queries, chosen in seeded:
        fit, scored = folds[fold]
        assert queries == [*fit, *scored]
        scored_nodes = {int(context.photo_node[photo]) for photo in scored}
        for photo in queries:
            used = set(chosen.nodes[photo][chosen.weights[photo] > 0].tolist())
            assert used and int(context.photo_node[photo]) not in used and not used & scored_nodes


def test_held_out_products_catalogue_rows_do_not_change_any_result(fashion_dir):
    before = run(fashion_dir, seed_mixes=(1.0, 0.5, 0.0))
    path = fashion_dir / "catalogue.csv"
    rows = catalogue.read_products(path)
    held = held_out_ids(fashion_dir)
    for row in rows:
        if row["id"] in held:  # wrong labels on the held-out products' own catalogue rows
            row["usage"], row["season"], row["articleType"] = "Party", "Spring", "Mislabelled"
    write_csv(path, rows, COLUMNS)
    after = run(fashion_dir, seed_mixes=(1.0, 0.5, 0.0))
    for key in ("results", "reference", "selection", "counts"):
        assert after[key] == before[key]


def test_photo_qa_benchmark_chooses_between_photo_and_title_seeds_on_validation(fashion_dir):
    result = run(fashion_dir, seed_mixes=(1.0, 0.0), head_weights=(0.0, 1.0))
    grid = result["selection"]["grid"]
    assert [(row["seed_mix"], row["head_weight"]) for row in grid] == [(1.0, 0.0), (1.0, 1.0), (0.0, 0.0), (0.0, 1.0)]
    best = max(row["mean"] for row in grid)
    chosen = next(row for row in grid if row["mean"] == best)
    assert (result["selection"]["seed_mix"], result["selection"]["head_weight"]) == \
        (chosen["seed_mix"], chosen["head_weight"])


def test_nearest_skips_excluded_references_and_weights_by_similarity():
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    references = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.2], [0.0, 1.0]]), dim=1)
    exclude = torch.tensor([[True, False, False], [False, False, False]])
    positions, weights = nearest(queries, references, 2, 0.05, exclude)
    assert positions.tolist() == [[1, 2], [2, 1]]
    assert weights.sum(1).tolist() == pytest.approx([1.0, 1.0])
    assert weights[0, 0] > 0.99 and weights[1, 0] > 0.99


def test_propagation_graph_scores_like_the_whole_graph(fashion_dir):
    from kgmm.nn.qa import RelationGraph

    data, product_node = catalogue.catalogue_graph(catalogue.read_products(fashion_dir / "catalogue.csv"), [])
    relations = len(data.relation_vocab)
    seeds = torch.zeros(int(data.num_nodes), 2)
    seeds[product_node["1000"], 0], seeds[product_node["1004"], 0], seeds[product_node["5001"], 1] = 0.5, 0.5, 1.0
    weights = torch.rand(2, 2 * relations)
    whole = RelationGraph.from_data(data)
    for steps in (1, 2):
        part = propagation_graph(data, seeds.nonzero()[:, 0], steps, relations)
        assert part.num_edges < whole.num_edges or steps == 2
        full_scores, part_scores = seeds, seeds
        for _ in range(steps):
            full_scores, part_scores = whole.step(full_scores, weights), part.step(part_scores, weights)
        torch.testing.assert_close(part_scores, full_scores)
    torch.testing.assert_close(propagation_graph(data, seeds.nonzero()[:, 0], 1, relations).relation_profile(seeds),
                               whole.relation_profile(seeds))


def test_photo_qa_benchmark_rejects_missing_folders_files_and_photos(fashion_dir, tmp_path):
    with pytest.raises(ValidationError, match="no fashion folder at .*nowhere"):
        run(tmp_path / "nowhere")
    (fashion_dir / "images" / "5004.jpg").unlink()
    with pytest.raises(SourceError, match=r"1 product photo\(s\) missing, the first .*5004\.jpg"):
        run(fashion_dir)
    (fashion_dir / "images" / "5004.jpg").write_bytes(b"")  # present again (an empty photo is the encoder's to reject)
    rows = [{key: value for key, value in row.items() if key != "season"}
            for row in catalogue.read_products(fashion_dir / "products_train.csv")]
    write_csv(fashion_dir / "products_train.csv", rows, [c for c in COLUMNS if c != "season"])
    with pytest.raises(ValidationError, match="lacks the column\\(s\\) season"):
        run(fashion_dir)
    (fashion_dir / "catalogue.csv").unlink()
    with pytest.raises(ValidationError, match="no catalogue.csv in"):
        run(fashion_dir)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("holdout", 1.0, "holdout must be in \\(0, 1\\)"),
    ("folds", 1, "folds must be >= 2"),
    ("steps", 3, "steps must be 1 or 2"),
    ("neighbours", 0, "neighbours must be >= 1"),
    ("temperature", 0.0, "temperature must be > 0"),
    ("seed_mixes", (1.5,), "seed_mixes must be shares in \\[0, 1\\]"),
    ("head_weights", (), "head_weights must be >= 0"),
])
def test_photo_qa_benchmark_rejects_bad_options(fashion_dir, option, value, message):
    with pytest.raises(ValidationError, match=message):
        run(fashion_dir, **{option: value})


def test_bench_photo_qa_cli_prints_json_and_a_table(monkeypatch):
    import typer
    from typer.testing import CliRunner

    from kgmm.cli.photo_qa import register

    calls = []
    row = {**dict.fromkeys(KIND_NAMES, 0.5), "mean": 0.5}

    def fake_benchmark(data, *, seed, progress):
        calls.append((data, seed, progress))
        return {"held_out_photos": 6, "question_types": {name: ["?"] for name in KIND_NAMES},
                "results": dict.fromkeys(VARIANTS, row), "reference": {benchmark.REFERENCE: row},
                "selection": {"folds": 2, "seed_mix": 1.0, "head_weight": 0.5, "no_image_prior": "photographed"},
                "beats_both": dict.fromkeys(KIND_NAMES, False), "seconds": {"total": 1.0}}

    monkeypatch.setattr(benchmark, "photo_qa_benchmark", fake_benchmark)
    app = typer.Typer()
    bench = typer.Typer()
    register(bench)
    app.add_typer(bench, name="bench")
    runner = CliRunner()
    result = runner.invoke(app, ["bench", "photo-qa", "--data", "somewhere", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output.strip().splitlines()[-1])
    assert printed["title"] == "photo QA benchmark (6 held-out photos, seed 3)"
    assert calls == [(Path("somewhere"), 3, False)]
    table = runner.invoke(app, ["bench", "photo-qa", "--data", "somewhere"])
    assert table.exit_code == 0, table.output
    assert "image+graph" in table.output and "beats both ablations on 0 of 3" in table.output
