"""Small helpers every layer may use (this module imports nothing of kgmm)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for bulk Python work (reading or writing 100k+ rows).

    Building that many small objects starts collection after collection, each walking every young object
    of the caller again (3-5x slower reads; 1-2 s per MetaQA KB load). The objects hold no cycles and are
    freed by reference counting; the collector resumes afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (imported here: call it where torch is loaded)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """The installed version of each package (``"none"`` when absent): for a model's config and cache keys."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "none"
    return found


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the nearest-rank ``fraction`` percentile of ``values`` (0.5: the median element; NaN when empty)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def shorten(text: str, limit: int = 80) -> str:
    """Return ``text`` cut to at most ``limit`` characters (ending in "..."), for messages that echo user input."""
    text = str(text)
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def cache_dir() -> Path:
    """Return kgmm's cache folder (``$KGMM_CACHE_DIR`` or ``~/.cache/kgmm``): lexicons, node features, images."""
    return Path(os.environ.get("KGMM_CACHE_DIR") or Path.home() / ".cache" / "kgmm")


def cpu_bf16_supported() -> bool:
    """Whether bf16 matmuls and convolutions run natively here (2-4x faster on such CPUs); ``KGMM_BF16=0`` turns
    it off."""
    import torch

    if os.environ.get("KGMM_BF16", "1") == "0":
        return False
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
