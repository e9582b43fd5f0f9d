"""Loaders for the public data sets kgmm's examples and benchmarks use, recognised by their file layout.

- ``medpix``: ``data_*.jsonl`` (radiology cases) and ``descriptions_*.jsonl`` + ``images/`` (captioned CT/MR images).
- ``fashion``: ``catalogue.csv`` (products) and ``products_*.csv`` with an ``image`` column + ``images/``.
- ``flickr8k``: ``captions.json`` (photos with five captions each) + ``images/``.

The data stay where the user keeps them; nothing is copied.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from kgmm.errors import SourceError
from kgmm.schema import Source
from kgmm.sources.files import (
    Item,
    image_source,
    iter_csv_rows,
    iter_json_records,
    join_sentences,
    open_binary,
    sniff_problem,
)

DATASETS = ("medpix", "fashion", "flickr8k")

_MEDPIX_CASE_KEYS = {"U_id", "Case"}
_MEDPIX_IMAGE_KEYS = {"U_id", "image", "Description"}
_FASHION_COLUMNS = {"productDisplayName", "articleType", "masterCategory"}
# Product attributes: entity type -> catalogue column.
FASHION_ATTRIBUTES = {
    "Category": "masterCategory",
    "SubCategory": "subCategory",
    "ArticleType": "articleType",
    "Colour": "baseColour",
    "Season": "season",
    "Usage": "usage",
    "Gender": "gender",
}
_MISSING_VALUES = {"", "na", "n/a", "nan", "none", "null"}
# MedPix case fields, in reading order, and the words that introduce them in the document text.
_MEDPIX_SECTIONS = (
    ("History", "History"),
    ("Exam", "Exam"),
    ("Findings", "Findings"),
    ("Differential Diagnosis", "Differential diagnosis"),
    ("Case Diagnosis", "Diagnosis"),
    ("Diagnosis By", "Diagnosed by"),
    ("Treatment & Follow Up", "Treatment and follow-up"),
)


def detect_dataset(path: Path) -> str | None:
    """Return the data set whose layout ``path`` (a file or a folder) has, or ``None``."""
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.is_file() and not child.name.startswith(".") and _dataset_of_file(child) is not None:
                return _dataset_of_file(child)
        return None
    if path.is_file():
        return _dataset_of_file(path)
    return None


def _dataset_of_file(path: Path) -> str | None:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            keys = _first_json_keys(path)
            if _MEDPIX_CASE_KEYS <= keys or _MEDPIX_IMAGE_KEYS <= keys:
                return "medpix"
        elif suffix == ".csv":
            if _FASHION_COLUMNS <= _csv_header(path):
                return "fashion"
        elif suffix == ".json" and _looks_like_flickr(path):
            return "flickr8k"
    except (OSError, UnicodeDecodeError):
        return None  # the reader reports an unreadable file
    return None


def _first_json_keys(path: Path) -> set[str]:
    with open_binary(path) as f:
        for raw in f:
            if raw.strip():
                try:
                    record = json.loads(raw)
                except ValueError:
                    return set()
                return set(record) if isinstance(record, dict) else set()
    return set()


def _csv_header(path: Path) -> set[str]:
    with open_binary(path) as f:
        line = f.readline().decode("utf-8-sig")
    return {name.strip().strip('"') for name in line.split(",")}


def _looks_like_flickr(path: Path) -> bool:
    with open_binary(path) as f:
        head = f.read(4096).decode("utf-8", errors="replace")
    return head.lstrip().startswith("[") and '"captions"' in head and '"image"' in head


def dataset_files(folder: Path, dataset: str) -> list[Path]:
    """Return the files of ``dataset`` in ``folder``, in reading order (documents before images)."""
    files = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and _dataset_of_file(p) == dataset
    ]
    if dataset == "fashion":
        files.sort(key=lambda p: (p.name != "catalogue.csv", p.name))
    return files


def read_dataset(path: Path, dataset: str) -> Iterator[Item]:
    """Read a data set from its folder, or one of its files."""
    readers: dict[str, Callable[[Path], Iterator[Item]]] = {
        "medpix": read_medpix_file,
        "fashion": read_fashion_file,
        "flickr8k": read_flickr8k_file,
    }
    if path.is_dir():
        files = dataset_files(path, dataset)
        if not files:
            yield SourceError(f"no {dataset} files here; {_LAYOUTS[dataset]}", path=str(path))
        for file in files:
            yield from readers[dataset](file)
    else:
        yield from readers[dataset](path)


_LAYOUTS = {
    "medpix": "expected data_*.jsonl (cases) and/or descriptions_*.jsonl with an images/ folder",
    "fashion": "expected catalogue.csv and/or products_*.csv (with an image column) and an images/ folder",
    "flickr8k": "expected captions.json (a list of {image, captions}) and an images/ folder",
}


def read_medpix_file(path: Path) -> Iterator[Item]:
    """Read a MedPix 2.0 JSONL file: cases become documents, image descriptions become image sources."""
    for item in iter_json_records(path):
        if isinstance(item, SourceError):
            yield item
            continue
        line, record = item
        if _MEDPIX_CASE_KEYS <= set(record):
            yield _medpix_case(record, path, line)
        elif _MEDPIX_IMAGE_KEYS <= set(record):
            yield _medpix_image(record, path, line)
        else:
            yield SourceError(
                f"not a MedPix case (keys {sorted(_MEDPIX_CASE_KEYS)}) nor image description (keys {sorted(_MEDPIX_IMAGE_KEYS)}); "
                f"keys found: {', '.join(sorted(record))}",
                path=str(path),
                line=line,
            )


def _medpix_case(record: dict, path: Path, line: int) -> Item:
    case = record.get("Case") or {}
    topic = record.get("Topic") or {}
    case_id = str(record.get("U_id") or "").strip()
    if not isinstance(case, dict) or not case_id:
        return SourceError(
            "MedPix case without a U_id or a Case object; fix or drop the line", path=str(path), line=line
        )
    paragraphs = []
    for field, heading in _MEDPIX_SECTIONS:
        value = _clean(case.get(field))
        if not value:
            continue
        body = _as_list(value) if field == "Differential Diagnosis" else join_sentences(value.splitlines())
        paragraphs.append(f"{heading}: {body}")
    if not paragraphs:
        return SourceError(
            f"MedPix case {case_id} has no history, findings or diagnosis; nothing to read", path=str(path), line=line
        )
    diagnosis = _clean(case.get("Case Diagnosis")) or _clean(case.get("Title"))
    differential = [
        _strip_bullet(x) for x in _clean(case.get("Differential Diagnosis")).splitlines() if _strip_bullet(x)
    ]
    metadata = {
        "dataset": "medpix",
        "case_id": case_id,
        "diagnosis": diagnosis,
        "differential": differential,
        "history": join_sentences(_clean(case.get("History")).splitlines()),
        "findings": join_sentences(_clean(case.get("Findings")).splitlines()),
        "category": _clean(topic.get("Category")),
        "acr_code": _clean(topic.get("ACR Code")),
        "images": [str(x) for x in (record.get("TAC") or []) + (record.get("MRI") or [])],
    }
    return Source.document(
        "\n\n".join(paragraphs), f"{path}:{line}", key=f"medpix-case:{case_id}", title=case_id, metadata=metadata
    )


def _medpix_image(record: dict, path: Path, line: int) -> Item:
    description = record.get("Description") or {}
    image_id = str(record.get("image") or "").strip()
    if not isinstance(description, dict) or not image_id:
        return SourceError(
            "MedPix image description without an image id; fix or drop the line", path=str(path), line=line
        )
    reference = image_id if Path(image_id).suffix else f"{image_id}.png"
    metadata = {
        "dataset": "medpix",
        "case_id": _clean(record.get("U_id")),
        "modality": _clean(description.get("Modality")) or _clean(record.get("Type")),
        "type": _clean(record.get("Type")),
        "plane": _clean(description.get("Plane")),
        "location": _clean(record.get("Location")),
        "location_category": _clean(record.get("Location Category")),
        "age": _clean(description.get("Age")),
        "sex": _clean(description.get("Sex")),
        "acr_codes": _clean(description.get("ACR Codes")),
    }
    return image_source(
        f"images/{reference}",
        " ".join(_clean(description.get("Caption")).split()),
        manifest=path,
        origin=f"{path}:{line}",
        line=line,
        label=f"image {image_id}",
        title=image_id,
        metadata={k: v for k, v in metadata.items() if v},
    )


def _clean(value) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))


def _strip_bullet(line: str) -> str:
    return line.strip().lstrip("-*•").strip()


def _as_list(value: str) -> str:
    lines = [_strip_bullet(x) for x in value.splitlines() if _strip_bullet(x)]
    if len(lines) > 1 and all(len(x) < 80 and not x.endswith(".") for x in lines):
        return ", ".join(lines) + "."
    return join_sentences(lines)


def fashion_attributes(row: dict[str, str]) -> dict[str, str]:
    """Return a catalogue row's attributes (entity type -> value), skipping empty and NA values."""
    attributes = {}
    for entity_type, column in FASHION_ATTRIBUTES.items():
        value = " ".join((row.get(column) or "").split())
        if value.lower() not in _MISSING_VALUES:
            attributes[entity_type] = value
    return attributes


def read_fashion_file(path: Path) -> Iterator[Item]:
    """Read a fashion catalogue CSV (one document per product) or a product image list (one image per product).

    The catalogue is streamed row by row.
    """
    for item in iter_csv_rows(path):
        if isinstance(item, SourceError):
            yield item
            continue
        row_number, line, row = item
        name = " ".join((row.get("productDisplayName") or "").split())
        product_id = (row.get("id") or "").strip()
        label = f"row {row_number}"
        if not name:
            yield SourceError(
                f"{label}: product {product_id or '?'} has no productDisplayName; fill it in or drop the row",
                path=str(path),
                line=line,
            )
            continue
        if not product_id:
            yield SourceError(
                f"{label}: product {name!r} has no id; fill it in or drop the row", path=str(path), line=line
            )
            continue
        metadata = {"dataset": "fashion", "product_id": product_id}
        year = (row.get("year") or "").strip()
        if year.lower() not in _MISSING_VALUES:
            metadata["year"] = int(float(year)) if year.replace(".", "", 1).isdigit() else year
        common = {
            "subject": name,
            "subject_type": "Product",
            "attributes": fashion_attributes(row),
            "metadata": metadata,
        }
        origin = f"{path}#{row_number}"
        if "image" in row:
            reference = (row.get("image") or "").strip()
            if not reference:
                yield SourceError(
                    f"{label}: product {product_id} has no image path; fill it in or drop the row",
                    path=str(path),
                    line=line,
                )
                continue
            yield image_source(
                reference, name, manifest=path, origin=origin, line=line, label=label, title=name, **common
            )
        else:
            yield Source.document(name, origin, key=f"fashion-product:{product_id}", title=name, **common)


def read_flickr8k_file(path: Path) -> Iterator[Item]:
    """Read Flickr8k's ``captions.json``: one image source per photo, its captions joined as sentences."""
    problem = sniff_problem(path)
    if problem is not None:
        yield problem
        return
    try:
        with open_binary(path) as f:
            entries = json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as e:
        yield SourceError(f"not valid UTF-8 at byte offset {e.start}; re-encode the file to UTF-8", path=str(path))
        return
    except json.JSONDecodeError as e:
        yield SourceError(f"invalid JSON ({e.msg})", path=str(path), line=e.lineno)
        return
    if not isinstance(entries, list):
        yield SourceError('expected a JSON list of {"image": ..., "captions": [...]}', path=str(path))
        return
    for number, entry in enumerate(entries, start=1):
        label = f"entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            yield SourceError(f'{label}: expected {{"image": "images/x.jpg", "captions": [...]}}', path=str(path))
            continue
        captions = [c for c in entry.get("captions") or [] if isinstance(c, str) and c.strip()]
        yield image_source(
            entry["image"],
            join_sentences(captions),
            manifest=path,
            origin=f"{path}#{number}",
            line=None,
            label=label,
            metadata={"dataset": "flickr8k", "captions": captions},
        )
