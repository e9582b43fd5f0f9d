"""Shared fixtures: the repo's sample data, the shared data sets (when present), loaded extractors."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


_EXTRACTORS: dict = {}


def get_extractor(domain: str):
    """One loaded extractor per domain for the whole session (loading spaCy + lexicons takes seconds)."""
    from kgmm.extract.pipeline import Extractor

    if domain not in _EXTRACTORS:
        _EXTRACTORS[domain] = Extractor(domain)
    return _EXTRACTORS[domain]


@pytest.fixture(scope="session")
def medical_extractor():
    return get_extractor("medical")


@pytest.fixture(scope="session")
def retail_extractor():
    return get_extractor("retail")


@pytest.fixture(scope="session")
def general_extractor():
    return get_extractor("general")


@pytest.fixture(scope="session")
def extractor_for():
    return get_extractor


# ---- the Bolt test server (ArcadeDB with its Bolt plugin; see graph/bolt_server.py) ------------------
BOLT_PASSWORD = "kgmm-test-password"
BOLT_DATABASES = ("kg", "kg_b", "kg_c")


def load_bolt_server_script():
    """Import graph/bolt_server.py (a script, not part of the package)."""
    import importlib.util
    import sys

    if "kgmm_bolt_server" in sys.modules:
        return sys.modules["kgmm_bolt_server"]
    spec = importlib.util.spec_from_file_location("kgmm_bolt_server", REPO / "graph" / "bolt_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kgmm_bolt_server"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bolt_server(tmp_path_factory):
    """One ArcadeDB Bolt server for the whole session, with three empty databases."""
    import importlib.util
    import os

    if importlib.util.find_spec("arcadedb_embedded") is None:
        if os.environ.get("CI"):
            pytest.fail('the Bolt tests need arcadedb-embedded: pip install -e ".[test]"')
        pytest.skip('the Bolt tests need arcadedb-embedded: pip install -e ".[test]"')
    script = load_bolt_server_script()
    server = script.start(tmp_path_factory.mktemp("bolt"), password=BOLT_PASSWORD,
                          database=BOLT_DATABASES[0], extra_databases=BOLT_DATABASES[1:])
    yield server
    server.stop()


@pytest.fixture
def bolt_store_factory(bolt_server):
    """Open a store on one of the server's databases, emptied first: ``factory(index=0, **options)``."""
    from kgmm.store import open_store

    opened = []

    def factory(index: int = 0, **options):
        store = open_store(bolt_server.uri, user=bolt_server.user, password=bolt_server.password,
                           database=BOLT_DATABASES[index], **options)
        store.cypher("MATCH (n) DETACH DELETE n", write=True)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture(params=["embedded", pytest.param("bolt", marks=pytest.mark.bolt)])
def store_factory(request, tmp_path):
    """Open a fresh, empty store of each backend: ``factory(index=0)`` (distinct indexes, distinct stores)."""
    if request.param == "embedded":
        from kgmm.store import open_store

        opened = []

        def factory(index: int = 0):
            store = open_store(tmp_path / f"store{index}")
            opened.append(store)
            return store

        yield factory
        for store in opened:
            store.close()
    else:
        yield request.getfixturevalue("bolt_store_factory")


# ---- a tiny alignment model (coloured squares), shared by the alignment and cross-modal tests ----------
COLOURS = {"red": (220, 20, 20), "green": (20, 180, 40), "blue": (30, 40, 220), "yellow": (240, 220, 20),
           "black": (10, 10, 10), "white": (245, 245, 245), "purple": (130, 30, 160), "orange": (250, 140, 0)}


@pytest.fixture(scope="session")
def encoders():
    from kgmm.nn.text import TextEncoder
    from kgmm.nn.vision import EfficientNetLiteEncoder

    return EfficientNetLiteEncoder(bf16=False), TextEncoder()


@pytest.fixture(scope="session")
def squares(tmp_path_factory):
    """Two photos per colour (a square on grey, in two shades), each captioned by its colour."""
    import json

    from PIL import Image

    root = tmp_path_factory.mktemp("squares")
    (root / "images").mkdir()
    lines = []
    for name, rgb in COLOURS.items():
        for size, shade in (("large", 0), ("small", 25)):
            image = Image.new("RGB", (96, 96), (128, 128, 128))
            image.paste(tuple(max(0, c - shade) for c in rgb), (12, 12, 84, 84))
            image.save(root / "images" / f"{name}-{size}.png")
            lines.append({"image": f"images/{name}-{size}.png", "text": f"a {size} {name} square", "colour": name})
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained(squares, encoders, tmp_path_factory):
    """An alignment model trained on ``squares`` (red is held out whole with seed 0): (folder, result, cache)."""
    from kgmm.tasks.align import train_align

    vision, text = encoders
    out = tmp_path_factory.mktemp("align") / "model"
    cache = tmp_path_factory.mktemp("cache")
    result = train_align(squares, out, holdout=0.25, seed=0, epochs=60, vision_model=vision, text_model=text,
                         hparams={"label_prior": False, "batch_size": 16}, cache_dir=cache, progress=False)
    return out, result, cache
