"""Source readers: what ``kgmm ingest PATH... --domain D`` reads.

``read_sources`` turns files and folders into ``Source`` values (documents and captioned images). A bad
file or record becomes a ``SourceError`` in the stream, naming the file and line and saying the fix,
and the rest of the batch goes on::

    for item in read_sources(["notes/", "photos.jsonl"]):
        if isinstance(item, SourceError):
            print(item)
        else:
            ...

Formats: plain text (``.txt``/``.md``, a folder walked recursively), JSONL and CSV records with a text
column, image manifests (JSONL/CSV with an image-path column and a caption column), and the data sets
``medpix``, ``fashion`` and ``flickr8k`` (recognised by their layout).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kgmm.errors import SourceError
from kgmm.schema import Source
from kgmm.sources.datasets import DATASETS, dataset_files, detect_dataset, read_dataset
from kgmm.sources.files import (
    CSV_SUFFIXES,
    IMAGE_SUFFIXES,
    JSONL_SUFFIXES,
    MAX_DOCUMENT_CHARS,
    TEXT_SUFFIXES,
    Item,
    ReadOptions,
    open_binary,
    read_csv,
    read_error,
    read_jsonl,
    read_text_file,
    sniff_problem,
)

__all__ = [
    "FORMATS", "InputFile", "ReadOptions", "Source", "SourceError", "count_records", "detect_format", "file_sizes",
    "read_inputs", "read_sources", "walk_inputs",
]

FORMATS = ("auto", "text", "jsonl", "csv", *DATASETS)

_SUFFIXES = {"text": TEXT_SUFFIXES, "jsonl": JSONL_SUFFIXES, "csv": CSV_SUFFIXES}
_RECORD_READERS = {"jsonl": read_jsonl, "csv": read_csv}  # text files take no read options


def read_sources(
    paths: Sequence[str | Path] | str | Path,
    *,
    fmt: str = "auto",
    text_column: str | None = None,
    caption_column: str | None = None,
    image_column: str | None = None,
    limit: int | None = None,
) -> Iterator[Source | SourceError]:
    """Yield the sources in ``paths`` (files or folders), and a ``SourceError`` for each bad file or record.

    Args:
        paths (Sequence[str | Path]): files and folders; folders are walked recursively in sorted order,
            hidden files skipped, unless the folder is a known data set.
        fmt (str, optional): one of ``FORMATS``; ``"auto"`` (default) decides per file from its suffix
            and layout.
        text_column (str, optional): the JSONL/CSV column holding the text (default: the first of
            text, body, content, description, note, abstract, productDisplayName, caption).
        caption_column (str, optional): the caption column of an image manifest.
        image_column (str, optional): the image-path column of an image manifest (default: image,
            image_path, path, file or filename, when its values are image files).
        limit (int, optional): stop after this many sources (errors do not count).

    Raises:
        SourceError: ``fmt`` is not one of ``FORMATS``.
    """
    options = ReadOptions(text_column=text_column, caption_column=caption_column, image_column=image_column)
    return read_inputs(walk_inputs(paths, fmt=fmt), options, limit=limit)


def read_inputs(inputs: Iterable[InputFile | SourceError], options: ReadOptions | None = None, *,
                limit: int | None = None) -> Iterator[Source | SourceError]:
    """Read the files a :func:`walk_inputs` found (its errors pass through), so a caller that also wants the
    files' sizes walks the input once: ``files = list(walk_inputs(paths)); read_inputs(files)``."""
    options = options or ReadOptions()
    return _limited((item for found in inputs for item in _read_input(found, options)), limit)


def _read_input(found: InputFile | SourceError, options: ReadOptions) -> Iterator[Item]:
    if isinstance(found, SourceError):
        yield found
        return
    try:
        if found.fmt in DATASETS:
            yield from read_dataset(found.path, found.fmt)
        elif found.fmt == "text":
            yield from read_text_file(found.path)
        else:
            yield from _RECORD_READERS[found.fmt](found.path, options)
    except OSError as e:
        yield read_error(found.path, e)


def _limited(items: Iterator[Item], limit: int | None) -> Iterator[Item]:
    count = 0
    if limit is not None and limit <= 0:
        return
    for item in items:
        yield item
        if isinstance(item, Source):
            count += 1
            if limit is not None and count >= limit:
                return


def detect_format(path: str | Path) -> str:
    """Return how ``path`` would be read: a name from ``FORMATS`` (never ``"auto"``), or ``"folder"``.

    Raises:
        SourceError: the path does not exist, or is a file kgmm cannot read.
    """
    path = Path(path)
    if not path.exists():
        raise SourceError("no such file or folder; check the path", path=str(path))
    dataset = detect_dataset(path)
    if dataset is not None:
        return dataset
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    for fmt, suffixes in _SUFFIXES.items():
        if suffix in suffixes:
            return fmt
    if suffix in IMAGE_SUFFIXES:
        raise SourceError(
            "an image on its own has no caption; list it in a manifest (JSONL or CSV with image and caption columns)",
            path=str(path),
        )
    if suffix == ".json":
        raise SourceError(
            "a .json file that is not a known data set; convert it to JSONL (one JSON object per line)", path=str(path)
        )
    if not path.is_file():
        raise SourceError("not a regular file; pass a file or a folder", path=str(path))
    try:
        problem = sniff_problem(path)
    except OSError as e:
        raise read_error(path, e) from e
    if problem is not None:
        raise SourceError(
            f"unsupported file type {suffix or '(no suffix)'} ({problem.args[0].split(': ', 1)[-1]}); "
            f"kgmm reads {', '.join(TEXT_SUFFIXES + JSONL_SUFFIXES + CSV_SUFFIXES)} and the data sets {', '.join(DATASETS)}",
            path=str(path),
        )
    return "text"  # an unknown suffix with text inside (README, .log): read it as text


def count_records(paths: Sequence[str | Path] | str | Path, *, fmt: str = "auto") -> int:
    """Return a cheap estimate of how many sources ``read_sources(paths)`` yields (for a progress bar).

    Counts lines, not records: a CSV row spanning lines or a file cut into parts makes it approximate.
    """
    total = 0
    for found in walk_inputs(paths, fmt=fmt):
        if isinstance(found, InputFile):
            try:
                total += _estimate(found.path, found.fmt)
            except (OSError, SourceError, ValueError):
                continue
    return total


def file_sizes(inputs: Iterable[InputFile | SourceError]) -> dict[str, int]:
    """Return ``{path: bytes}`` of the files among ``inputs`` (the errors are left out)."""
    return {str(found.path): found.size for found in inputs if isinstance(found, InputFile)}


def _estimate(path: Path, fmt: str) -> int:
    if fmt == "text":
        return max(1, -(-path.stat().st_size // MAX_DOCUMENT_CHARS))
    if fmt == "flickr8k":
        with open_binary(path) as f:
            return f.read().count(b'"captions"')
    lines = _count_lines(path)
    if fmt == "csv" or (fmt == "fashion" and path.suffix.lower() == ".csv"):
        return max(0, lines - 1)
    return lines


def _count_lines(path: Path) -> int:
    lines = 0
    last = b"\n"
    with open_binary(path) as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


@dataclass(frozen=True)
class InputFile:
    """One file :func:`read_sources` reads: its path, its format (never ``"auto"``) and its size in bytes."""

    path: Path
    fmt: str
    size: int


def walk_inputs(paths: Sequence[str | Path] | str | Path, *, fmt: str = "auto") -> Iterator[InputFile | SourceError]:
    """Yield the files under ``paths`` in reading order, and a ``SourceError`` for each path that cannot be read.

    Folders are walked recursively in sorted order (hidden files skipped, symbolic links back up the tree
    followed once), unless the folder is a known data set, whose files come in the data set's order.

    Raises:
        SourceError: ``fmt`` is not one of ``FORMATS``.
    """
    if fmt not in FORMATS:
        raise SourceError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if isinstance(paths, (str, Path)):
        paths = [paths]  # one path, not the characters of one
    seen: set[Path] = set()
    return (found for path in paths for found in _walk(Path(path), fmt, seen))


def _walk(path: Path, fmt: str, seen: set[Path]) -> Iterator[InputFile | SourceError]:
    try:
        if not path.exists():
            kind = "symbolic link to nothing" if path.is_symlink() else "no such file or folder"
            yield SourceError(f"{kind}; check the path", path=str(path))
        elif path.is_dir():
            yield from _walk_folder(path, fmt, seen)
        elif not path.is_file():
            yield SourceError("not a regular file (a pipe or device?); pass a file or a folder", path=str(path))
        else:
            yield InputFile(path, detect_format(path) if fmt == "auto" else fmt, path.stat().st_size)
    except SourceError as e:
        yield e
    except OSError as e:
        yield read_error(path, e)


def _walk_folder(folder: Path, fmt: str, seen: set[Path]) -> Iterator[InputFile | SourceError]:
    real = folder.resolve()
    if real in seen:
        return  # a symbolic link back up the tree
    seen.add(real)
    dataset = fmt if fmt in DATASETS else (detect_dataset(folder) if fmt == "auto" else None)
    if dataset is not None:
        files = dataset_files(folder, dataset)
        if not files:
            yield from read_dataset(folder, dataset)  # the data set's own "no files here" error
        for file in files:
            yield InputFile(file, dataset, file.stat().st_size)
        return
    for child in _children(folder):
        if child.is_dir() or _walkable(child, fmt):
            yield from _walk(child, fmt, seen)


def _children(folder: Path) -> list[Path]:
    return [child for child in sorted(folder.iterdir()) if not child.name.startswith(".")]


def _walkable(path: Path, fmt: str) -> bool:
    suffix = path.suffix.lower()
    if fmt == "auto":
        return any(suffix in suffixes for suffixes in _SUFFIXES.values())
    return suffix in _SUFFIXES.get(fmt, ())
