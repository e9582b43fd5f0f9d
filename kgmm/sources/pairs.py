"""Image–text pairs for contrastive alignment: one reader for several layouts, and a stable split by image.

:func:`read_pairs` detects the layout of a file:

- JSONL, one ``{"image": ..., "text": ...}`` object a line (the text key may also be ``caption``,
  ``description``, ``title`` or ``name``; the image key ``image_path``, ``path``, ``file`` or ``filename``);
  other scalar keys become labels. A MedPix-style line (``image`` without suffix and a ``Description`` object
  with a ``Caption``) gives the caption as text and ``modality``, ``plane`` and ``location`` as labels.
- CSV/TSV with an image column and a text column (as above, or ``productDisplayName``); the other columns
  become labels (so a fashion product table gives its article type, colour, usage, ...).
- JSON, a list of ``{"image": ..., "captions": [...]}``: one pair per caption (the Flickr8k layout).

Relative image paths resolve against the pairs file's folder. Every pair carries a ``group``, the identity of
its image (the path as written), so that :func:`split_pairs` never puts one photo on both sides of a split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kgmm.errors import SourceError, ValidationError

__all__ = ["ImageTextPair", "PairSplit", "read_pairs", "split_pairs"]

TEXT_KEYS = ("text", "caption", "productDisplayName", "description", "title", "name")
IMAGE_KEYS = ("image", "image_path", "path", "file", "filename")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
MEDPIX_LABELS = {"modality": ("Description", "Modality"), "plane": ("Description", "Plane"), "location": ("Location",)}
_FORMATS = "JSONL (.jsonl), CSV/TSV (.csv, .tsv) or a JSON list of {image, captions} (.json)"


@dataclass
class ImageTextPair:
    """One image and one text describing it.

    Args:
        image (Path): the image file (resolved).
        text (str): its caption, title or product name.
        group (str): the image's identity (its path as written in the file); pairs of one group share a photo.
        labels (dict[str, str]): other attributes of the record (article type, modality, ...).
        line (int): where the record is in the file (1-based; the list index + 1 for a JSON list).
    """

    image: Path
    text: str
    group: str
    labels: dict[str, str] = field(default_factory=dict)
    line: int = 0


@dataclass
class PairSplit:
    """Pairs on each side of :func:`split_pairs`.

    Args:
        train (list[ImageTextPair]): the pairs kept for training.
        holdout (list[ImageTextPair]): the pairs held out (whole groups).
    """

    train: list[ImageTextPair]
    holdout: list[ImageTextPair]


def read_pairs(path: str | Path, *, check_images: bool = True) -> list[ImageTextPair]:
    """Read image–text pairs from a JSONL, CSV/TSV or JSON file (layout detected; see the module docstring).

    Args:
        path (str or Path): the pairs file.
        check_images (bool, optional): raise when an image file does not exist. (default: True)

    Raises:
        SourceError: a missing or empty file, a malformed line, no image or text column, or a missing image,
            naming the file and line and saying the fix.
    """
    path = Path(path)
    if path.is_dir():
        raise SourceError(f"expected a pairs file, got a folder; pass a {_FORMATS} file inside it", path=str(path))
    if not path.is_file():
        raise SourceError(f"no such pairs file; pass a {_FORMATS} file", path=str(path))
    if path.stat().st_size == 0:
        raise SourceError("the pairs file is empty; add one image and its text per record", path=str(path))
    suffix = path.suffix.lower()
    if suffix == ".json":
        pairs = list(_read_json_list(path))
    elif suffix in (".csv", ".tsv"):
        pairs = list(_read_csv(path))
    elif suffix in (".jsonl", ".ndjson", ".jsonlines"):
        pairs = list(_read_jsonl(path))
    else:
        raise SourceError(f"unknown pairs format {suffix or '(no suffix)'!r}; give {_FORMATS}", path=str(path))
    if not pairs:
        raise SourceError("no image–text pairs in the file (every text is empty); add records with a text",
                          path=str(path))
    if check_images:
        for pair in pairs:
            if not pair.image.is_file():
                raise SourceError(f"no image file {pair.image}; image paths resolve against {path.parent}: fix the "
                                  "path or put the image there", path=str(path), line=pair.line)
    return pairs


def split_pairs(pairs: Sequence[ImageTextPair], holdout: float = 0.2, seed: int = 0) -> PairSplit:
    """Split pairs by group: a group is held out when the hash of ``(seed, group)`` falls below ``holdout``.

    The decision depends only on the group and the seed, never on file order; every pair of a group lands on
    the same side. With at least two groups, each side gets at least one group when ``0 < holdout < 1``.

    Args:
        pairs (list of ImageTextPair): the pairs.
        holdout (float, optional): the share of groups held out, in [0, 1). (default: 0.2)
        seed (int, optional): another seed draws another split. (default: 0)
    """
    if not 0.0 <= holdout < 1.0:
        raise ValidationError(f"holdout must be in [0, 1), got {holdout}")
    groups = sorted({pair.group for pair in pairs})
    score = {group: group_hash(group, seed) for group in groups}
    held = {group for group in groups if score[group] < holdout}
    if holdout > 0 and len(groups) >= 2:
        ordered = sorted(groups, key=lambda group: (score[group], group))
        if not held:
            held = {ordered[0]}
        elif len(held) == len(groups):
            held.discard(ordered[-1])
    return PairSplit(train=[p for p in pairs if p.group not in held], holdout=[p for p in pairs if p.group in held])


def group_hash(group: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``group`` and ``seed`` (SHA-256), the same on every machine."""
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _read_jsonl(path: Path) -> Iterator[ImageTextPair]:
    from kgmm.sources.files import iter_json_records

    for item in iter_json_records(path):
        if isinstance(item, SourceError):
            raise item
        number, record = item
        if isinstance(record.get("Description"), Mapping) and "image" in record:
            yield from _medpix_pair(path, number, record)
        else:
            yield from _generic_pair(path, number, record)


def _read_csv(path: Path) -> Iterator[ImageTextPair]:
    from kgmm.sources.files import iter_csv_rows

    for item in iter_csv_rows(path):
        if isinstance(item, SourceError):
            raise item
        _, line, record = item
        yield from _generic_pair(path, line, record)


def _read_json_list(path: Path) -> Iterator[ImageTextPair]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SourceError(f"not UTF-8 text ({e.reason} at byte {e.start}); save the file as UTF-8",
                          path=str(path)) from None
    except json.JSONDecodeError as e:
        raise SourceError(f"invalid JSON ({e.msg} at column {e.colno}); fix the file (or write one JSON object "
                          "a line as .jsonl)", path=str(path), line=e.lineno) from None
    if not isinstance(records, list):
        raise SourceError(f"expected a JSON list of {{\"image\": ..., \"captions\": [...]}} objects, got "
                          f"{type(records).__name__}", path=str(path))
    for index, record in enumerate(records, 1):
        if not isinstance(record, Mapping):
            raise SourceError(f"item {index} is {type(record).__name__}, not an object with image and captions",
                              path=str(path), line=index)
        captions = record.get("captions")
        if captions is None:
            yield from _generic_pair(path, index, record)
            continue
        if isinstance(captions, str) or not isinstance(captions, list):
            raise SourceError(f"item {index}: captions must be a list of strings, got {type(captions).__name__}",
                              path=str(path), line=index)
        image = _image_value(path, index, record)
        labels = _labels(record, exclude={_image_key(record), "captions"})
        for caption in captions:
            text = caption.strip() if isinstance(caption, str) else ""
            if text:
                yield ImageTextPair(path.parent / image, text, image, dict(labels), index)


def _generic_pair(path: Path, line: int, record: Mapping) -> Iterator[ImageTextPair]:
    image = _image_value(path, line, record)
    text_key = next((key for key in TEXT_KEYS if key in record), None)
    if text_key is None:
        raise SourceError(f"no text column; expected one of {', '.join(TEXT_KEYS)}, found {', '.join(record)}: "
                          "rename the column holding the caption to 'text'", path=str(path), line=line)
    text = record[text_key]
    text = text.strip() if isinstance(text, str) else ""
    if text:
        labels = _labels(record, exclude={_image_key(record), text_key})
        yield ImageTextPair(path.parent / image, text, image, labels, line)


def _medpix_pair(path: Path, line: int, record: Mapping) -> Iterator[ImageTextPair]:
    name = record["image"]
    if not isinstance(name, str) or not name.strip():
        raise SourceError("the image field is empty; give the image name", path=str(path), line=line)
    name = name.strip()
    relative = name if Path(name).suffix.lower() in IMAGE_SUFFIXES else _find_image(path.parent, name)
    caption = record["Description"].get("Caption")
    text = caption.strip() if isinstance(caption, str) else ""
    if not text:
        return
    labels = {}
    for label, keys in MEDPIX_LABELS.items():
        value: object = record
        for key in keys:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, str | int | float) and str(value).strip():
            labels[label] = str(value).strip()
    yield ImageTextPair(path.parent / relative, text, relative, labels, line)


def _find_image(folder: Path, name: str) -> str:
    """The path (relative to ``folder``) of an image named without suffix: in ``folder/images`` or ``folder``."""
    for base in ("images/", ""):
        for suffix in IMAGE_SUFFIXES:
            if (folder / f"{base}{name}{suffix}").is_file():
                return f"{base}{name}{suffix}"
    return f"images/{name}.png"  # reported as missing by read_pairs


def _image_key(record: Mapping) -> str | None:
    return next((key for key in IMAGE_KEYS if key in record), None)


def _image_value(path: Path, line: int, record: Mapping) -> str:
    key = _image_key(record)
    if key is None:
        raise SourceError(f"no image column; expected one of {', '.join(IMAGE_KEYS)}, found "
                          f"{', '.join(map(str, record)) or 'none'}: add the image path as 'image'",
                          path=str(path), line=line)
    value = record[key]
    if not isinstance(value, str) or not value.strip():
        raise SourceError(f"the {key!r} field is empty or not a path ({value!r}); give the image file's path",
                          path=str(path), line=line)
    return value.strip()


def _labels(record: Mapping, exclude: Iterable[str | None]) -> dict[str, str]:
    excluded = set(exclude)
    return {str(key): str(value).strip() for key, value in record.items()
            if key not in excluded and isinstance(value, str | int | float) and not isinstance(value, bool)
            and str(value).strip()}
