"""Small helpers every layer may use (this module imports nothing of kgmm)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any


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


def batched(items: Iterable[Any], size: int) -> Iterator[Any]:
    """Split ``items`` into consecutive batches of at most ``size``, in order.

    A sized, sliceable ``items`` (a list, tuple, tensor, array or Arrow table) is cut into slices of its own type;
    any other iterable (a generator, a set, a mapping's keys) is read lazily into lists.

    Args:
        items (iterable): what to split.
        size (int): most items per batch (at least 1).

    Yields:
        each batch; none when ``items`` is empty.

    Raises:
        ValueError: for a ``size`` below 1.
    """
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size!r}")
    kind = type(items)
    if hasattr(kind, "__len__") and hasattr(kind, "__getitem__") and not isinstance(items, Mapping):
        for start in range(0, len(items), size):
            yield items[start : start + size]
        return
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


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
