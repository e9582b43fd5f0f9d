"""Image encoding throughput: first encoding of a folder of images, then the same images from the cache.

Both passes go through :func:`kgmm.nn.vision.encode_image_files`, the path every kgmm command uses: the
first into an empty cache folder (read, decode, resize, crop, forward pass, store), the second reading
rows back by content hash (hash every file, look up, gather).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from kgmm.errors import ValidationError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def image_files(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Return the image files under ``folder`` (recursively, sorted), at most ``limit``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"no image folder {folder}; pass a folder of JPEG/PNG files")
    files = sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
    if not files:
        raise ValidationError(f"no images (JPEG, PNG, ...) under {folder}")
    return files[:limit] if limit else files


def vision_benchmark(
    folder: str | Path,
    *,
    limit: int | None = None,
    model: str | Path | None = None,
    batch_size: int | None = None,
    bf16: bool | None = None,
    progress: bool = False,
) -> dict:
    """Encode the images under ``folder`` once into a fresh cache, then again from it; return the rates.

    Args:
        folder (str or Path): images to encode.
        limit (int, optional): at most this many images.
        model (str or Path, optional): the vision model (default the packaged EfficientNet-Lite0).
        batch_size (int, optional): images per forward pass.
        bf16 (bool, optional): EfficientNet-Lite0 under bf16 autocast (default: when the CPU does bf16).
        progress (bool, optional): show progress.
    """
    import torch
    from PIL import Image

    from kgmm.nn.vision import encode_image_files, vision_encoder

    files = image_files(folder, limit)
    with Image.open(files[0]) as first:
        size = first.size
    started = time.perf_counter()
    options = {"bf16": bf16} if bf16 is not None else {}
    encoder = vision_encoder(model, **options)
    load_s = time.perf_counter() - started
    encoder.encode(files[:2])  # warm-up: first-call allocations are not throughput
    with tempfile.TemporaryDirectory(prefix="kgmm-bench-vision-") as cache:
        calls = getattr(encoder, "calls", 0)
        started = time.perf_counter()
        first_pass = encode_image_files(files, encoder, cache_dir=cache, batch_size=batch_size, progress=progress)
        first_s = time.perf_counter() - started
        first_calls, calls = getattr(encoder, "calls", 0) - calls, getattr(encoder, "calls", 0)
        started = time.perf_counter()
        second_pass = encode_image_files(files, encoder, cache_dir=cache)
        cached_s = time.perf_counter() - started
        cached_calls = getattr(encoder, "calls", 0) - calls
    if not torch.equal(first_pass, second_pass):
        raise ValidationError("cached features differ from the computed ones; delete the cache folder")
    return {
        "title": "image encoding",
        "folder": str(folder),
        "images": len(files),
        "first_image_size": list(size),
        "model": repr(encoder),
        "dim": int(first_pass.size(1)),
        "threads": torch.get_num_threads(),
        "model_load_s": round(load_s, 3),
        "encode_s": round(first_s, 3),
        "images_per_s": round(len(files) / first_s, 1),
        "cached_s": round(cached_s, 4),
        "cached_images_per_s": round(len(files) / cached_s, 1),
        "forward_passes": first_calls,
        "cached_forward_passes": cached_calls,  # 0: the second pass read every feature from the cache
    }
