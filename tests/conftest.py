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
        store.cypher("MATCH (n) DETACH DELETE n")
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
