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
