"""Readers for plain-text, JSONL and CSV files and for image + caption manifests.

Each reader yields ``Source`` values and, for a bad file or record, a ``SourceError`` (yielded, not
raised) that names the file and line and says the fix, so that one bad record never stops a batch.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kgmm.errors import SourceError
from kgmm.schema import Source

Item = Source | SourceError

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst", ".text")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
CSV_SUFFIXES = (".csv", ".tsv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")

TEXT_COLUMNS = ("text", "body", "content", "description", "note", "abstract", "productDisplayName", "caption")
CAPTION_COLUMNS = ("caption", "captions", "description", "alt_text", "alt", "text")
IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename")
TITLE_COLUMNS = ("title",)
ID_COLUMNS = ("id",)

# One spaCy doc per source: longer texts are cut into parts of at most this many characters.
MAX_DOCUMENT_CHARS = 100_000
_SNIFF_BYTES = 8192
_READ_CHARS = 1 << 20
_MAX_METADATA_VALUE_CHARS = 200
_MAX_METADATA_FIELDS = 20
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 8, 27))
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([.,;:!?])")


@dataclass(frozen=True)
class ReadOptions:
    """Column choices a user may force (``--text-column`` etc.); ``None`` means detect."""

    text_column: str | None = None
    caption_column: str | None = None
    image_column: str | None = None


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes (one place, so tests can simulate unreadable files)."""
    return open(path, "rb")


def read_error(path: Path, error: OSError) -> SourceError:
    """Return the ``SourceError`` for a file the operating system would not let us read."""
    reason = error.strerror or str(error)
    return SourceError(f"cannot read it ({reason}); check that it exists and that you may read it", path=str(path))


# ---------------------------------------------------------------- text checks


def sniff_problem(path: Path) -> SourceError | None:
    """Return why the start of ``path`` is not UTF-8 text (empty, binary, UTF-16), or ``None``."""
    with open_binary(path) as f:
        head = f.read(_SNIFF_BYTES)
    if not head:
        return SourceError("the file is empty; remove it or add text", path=str(path))
    return _binary_problem(path, head, 0)


def _binary_problem(path: Path, chunk: bytes, offset: int) -> SourceError | None:
    if offset == 0 and chunk[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return SourceError(
            "the file is UTF-16 encoded; re-encode it to UTF-8 (e.g. `iconv -f utf-16 -t utf-8`)", path=str(path)
        )
    nul = chunk.find(b"\x00")
    if nul >= 0:
        return SourceError(
            f"looks like a binary file (NUL byte at byte offset {offset + nul}); kgmm reads UTF-8 text: "
            "convert it to .txt, or list images in a manifest",
            path=str(path),
        )
    if offset == 0:
        sample = chunk[:_SNIFF_BYTES]
        control = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
        if control > 0.1 * len(sample):
            return SourceError(
                f"looks like a binary file ({control} control bytes in its first {len(sample)}); kgmm reads UTF-8 text: "
                "convert it to .txt",
                path=str(path),
            )
    return None


def encoding_error(path: Path, offset: int, bad: bytes, line: int | None = None, label: str = "") -> SourceError:
    """Return the ``SourceError`` for bytes that are not UTF-8, naming the byte offset and the fix."""
    shown = " ".join(f"0x{b:02x}" for b in bad[:4]) or "an incomplete character"
    return SourceError(
        f"{label + ': ' if label else ''}not valid UTF-8 ({shown} at byte offset {offset}); re-encode the file to UTF-8, "
        f"e.g. `iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}`",
        path=str(path),
        line=line,
    )


def check_text_file(path: Path) -> SourceError | None:
    """Return why ``path`` is not a readable UTF-8 text file (empty, binary, bad encoding), or ``None``.

    Reads the whole file in chunks (constant memory), so a problem deep in a large file is found
    before any part of it is yielded.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    has_text = False
    with open_binary(path) as f:
        while chunk := f.read(_READ_CHARS):
            problem = _binary_problem(path, chunk, offset)
            if problem is not None:
                return problem
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as e:
                start = offset - pending + e.start
                return encoding_error(path, start, (decoder.getstate()[0] + chunk)[e.start : e.end])
            has_text = has_text or bool(text.strip().lstrip("\ufeff"))
            offset += len(chunk)
        pending = decoder.getstate()[0]
        if pending:
            return encoding_error(path, offset - len(pending), pending)
    if offset == 0:
        return SourceError("the file is empty; remove it or add text", path=str(path))
    if not has_text:
        return SourceError("the file holds only whitespace; remove it or add text", path=str(path))
    return None


# ---------------------------------------------------------------- long texts


def split_long_text(chunks: Iterable[str], max_chars: int = MAX_DOCUMENT_CHARS) -> Iterator[str]:
    """Cut a stream of text into parts of at most ``max_chars``, at paragraph, sentence or word ends.

    The parts joined give back the input exactly; the same input always gives the same parts.
    """
    buffer = ""
    for chunk in chunks:
        buffer += chunk
        start = 0
        while len(buffer) - start > max_chars:
            cut = _split_point(buffer, start, start + max_chars)
            yield buffer[start:cut]
            start = cut
        buffer = buffer[start:]
    if buffer:
        yield buffer


def _split_point(text: str, start: int, end: int) -> int:
    lowest = start + (end - start) // 2  # parts never shrink below half the limit
    paragraph = text.rfind("\n\n", lowest, end)
    if paragraph >= 0:
        return paragraph + 2
    sentence = max(text.rfind(mark, lowest, end - 1) for mark in (". ", "? ", "! ", ".\n", "\n"))
    if sentence >= 0:
        return sentence + 2 if text[sentence] != "\n" else sentence + 1
    space = text.rfind(" ", lowest, end)
    return space + 1 if space >= 0 else end


def _text_chunks(path: Path) -> Iterator[str]:
    with open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline=None) as f:
        while chunk := f.read(_READ_CHARS):
            yield chunk


def document_parts(
    text_parts: Iterator[str], origin: str, title: str, key: str | None = None, **kwargs
) -> Iterator[Item]:
    """Yield one document, or, for a text longer than ``MAX_DOCUMENT_CHARS``, one per part.

    A part's origin is ``ORIGIN#part-N`` and its id is keyed by its number and text, so re-reading
    gives the same ids and two equal parts of one file stay two sources.
    """
    first = next(text_parts, None)
    second = next(text_parts, None)
    if first is None:
        return
    if second is None:
        yield Source.document(first, origin, key=key, title=title, **kwargs)
        return
    metadata = dict(kwargs.pop("metadata", None) or {})
    for number, part in enumerate(_chain(first, second, text_parts), start=1):
        if not part.strip():
            continue
        yield Source.document(
            part,
            f"{origin}#part-{number}",
            key=f"{key or ''}\x1fpart-{number}\x1f{part}",
            title=f"{title} (part {number})",
            metadata={**metadata, "part": number},
            **kwargs,
        )


def _chain(first: str, second: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield second
    yield from rest


def read_text_file(path: Path) -> Iterator[Item]:
    """Read a plain-text file as one document titled with the file name (parts if it is long)."""
    problem = check_text_file(path)
    if problem is not None:
        yield problem
        return
    yield from document_parts(split_long_text(_text_chunks(path)), str(path), path.name)


# ---------------------------------------------------------------- line-based records


class LineReader:
    """Iterate the decoded lines of a file (line endings kept), noting the lines that are not UTF-8.

    A line that is not UTF-8 is decoded with replacement characters and recorded in ``bad_lines``
    (line number -> (byte offset, bad bytes)), so that a CSV or JSONL reader can report that record and go on.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad_lines: dict[int, tuple[int, bytes]] = {}
        self.line_number = 0

    def __iter__(self) -> Iterator[str]:
        offset = 0
        with open_binary(self.path) as f:
            for raw in f:
                self.line_number += 1
                data = raw[3:] if self.line_number == 1 and raw.startswith(codecs.BOM_UTF8) else raw
                try:
                    line = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    skipped = len(raw) - len(data)
                    self.bad_lines[self.line_number] = (offset + skipped + e.start, data[e.start : e.end])
                    line = data.decode("utf-8", errors="replace")
                offset += len(raw)
                yield line


def iter_json_records(path: Path) -> Iterator[tuple[int, dict] | SourceError]:
    """Yield ``(line, object)`` for each JSON object line of a JSONL file, or a ``SourceError`` per bad line."""
    problem = sniff_problem(path)
    if problem is not None:
        yield problem
        return
    lines = LineReader(path)
    records = 0
    for number, line in enumerate(lines, start=1):
        if number in lines.bad_lines:
            yield encoding_error(path, *lines.bad_lines[number], line=number)
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            yield SourceError(
                f"invalid JSON ({e.msg} at column {e.colno}); each line must be one JSON object: fix or remove this line",
                path=str(path),
                line=number,
            )
            continue
        if not isinstance(record, dict):
            yield SourceError(
                f'expected a JSON object on each line, got {type(record).__name__}; wrap the value as {{"text": ...}}',
                path=str(path),
                line=number,
            )
            continue
        records += 1
        yield number, record
    if records == 0 and not lines.bad_lines:
        yield SourceError("the file has no records (only blank lines); remove it or add records", path=str(path))


def iter_csv_rows(path: Path) -> Iterator[tuple[int, int, dict[str, str]] | SourceError]:
    """Yield ``(row, line, {column: value})`` for each data row of a CSV/TSV file, or a ``SourceError`` per bad row.

    The first line is the header. ``row`` counts data rows from 1; ``line`` is the file line the row ends on.
    """
    problem = sniff_problem(path)
    if problem is not None:
        yield problem
        return
    lines = LineReader(path)
    line_iter = iter(lines)
    header_line = next(line_iter, "")
    if 1 in lines.bad_lines:
        yield encoding_error(path, *lines.bad_lines[1], line=1, label="header")
        return
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff_delimiter(header_line)
    _raise_field_limit()
    header = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter), [])]
    if not any(header):
        yield SourceError("the first line (the header) is empty; put the column names there", path=str(path), line=1)
        return
    reader = csv.reader(_chain_line(header_line, line_iter), delimiter=delimiter)
    next(reader)
    previous_line = 1
    row = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            row += 1
            yield SourceError(
                f"row {row}: malformed CSV ({e}); fix the quoting of this row", path=str(path), line=lines.line_number
            )
            previous_line = lines.line_number
            continue
        line = reader.line_num
        span = range(previous_line + 1, line + 1)
        previous_line = line
        if not values or not any(v.strip() for v in values):
            continue
        row += 1
        bad_line = next((n for n in span if n in lines.bad_lines), None)
        if bad_line is not None:
            yield encoding_error(path, *lines.bad_lines[bad_line], line=bad_line, label=f"row {row}")
            continue
        if len(values) != len(header):
            yield SourceError(
                f"row {row} has {len(values)} fields but the header has {len(header)} ({', '.join(header)}); "
                f"quote values that contain {delimiter!r} or a quote, or fix the row",
                path=str(path),
                line=line,
            )
            continue
        yield row, line, dict(zip(header, values, strict=True))
    if row == 0:
        yield SourceError("the file has a header but no rows; add rows or remove it", path=str(path))


def _chain_line(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _raise_field_limit() -> None:
    # The default (128 KiB) rejects long text cells; documents are cut into parts later anyway.
    if csv.field_size_limit() < 2**31 - 1:
        csv.field_size_limit(2**31 - 1)


# ---------------------------------------------------------------- columns and values


def find_column(columns: Iterable[str], candidates: Iterable[str]) -> str | None:
    """Return the first of ``candidates`` present in ``columns`` (case-insensitive), as spelled in ``columns``."""
    by_lower = {}
    for column in columns:
        by_lower.setdefault(column.lower(), column)
    for candidate in candidates:
        if candidate.lower() in by_lower:
            return by_lower[candidate.lower()]
    return None


def field_value(record: Mapping, column: str):
    """Return ``record[column]``; a dotted column (``Description.Caption``) reaches into nested objects."""
    if column in record:
        return record[column]
    value = record
    for part in column.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def has_field(record: Mapping, column: str) -> bool:
    if column in record:
        return True
    value = record
    for part in column.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def join_sentences(texts: Iterable[str]) -> str:
    """Join captions or lines as sentences: whitespace tidied, each ending with a period."""
    sentences = []
    for text in texts:
        sentence = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", " ".join(str(text).split()))
        if not sentence:
            continue
        if sentence[-1] not in ".!?":
            sentence += "."
        sentences.append(sentence)
    return " ".join(sentences)


def as_text(value) -> str | None:
    """Return a record value as text (a list of strings becomes sentences); ``None`` for objects."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return join_sentences(value)
    return None


def small_metadata(record: Mapping, exclude: Iterable[str | None]) -> dict:
    """Keep a record's short scalar fields (not the text) as source metadata."""
    skipped = {c for c in exclude if c}
    metadata = {}
    for key, value in record.items():
        if key in skipped or key is None or len(metadata) >= _MAX_METADATA_FIELDS:
            continue
        if isinstance(value, str):
            value = value.strip()
            if not value or len(value) > _MAX_METADATA_VALUE_CHARS:
                continue
        elif not isinstance(value, (int, float, bool)):
            continue
        metadata[str(key)] = value
    return metadata


def _looks_like_image(value) -> bool:
    return isinstance(value, str) and value.strip().lower().endswith(IMAGE_SUFFIXES)


@dataclass
class _Columns:
    """The columns a file's records are read through, chosen from its first record."""

    image: str | None
    text: str | None
    caption: str | None
    title: str | None
    id: str | None


def _choose_columns(record: Mapping, options: ReadOptions) -> _Columns:
    keys = list(record)
    image = options.image_column
    if image is None and options.text_column is None:
        candidate = find_column(keys, IMAGE_COLUMNS)
        if candidate is not None and _looks_like_image(field_value(record, candidate)):
            image = candidate
    if image is not None:
        caption = options.caption_column or find_column([k for k in keys if k != image], CAPTION_COLUMNS)
        return _Columns(
            image=image,
            text=None,
            caption=caption,
            title=find_column(keys, TITLE_COLUMNS),
            id=find_column(keys, ID_COLUMNS),
        )
    text = options.text_column or find_column(keys, TEXT_COLUMNS)
    return _Columns(
        image=None, text=text, caption=None, title=find_column(keys, TITLE_COLUMNS), id=find_column(keys, ID_COLUMNS)
    )


def _missing_text_column(
    path: Path, columns: Iterable[str], options: ReadOptions, line: int | None, what: str
) -> SourceError:
    found = ", ".join(repr(c) for c in columns) or "none"
    if options.text_column:
        return SourceError(
            f"no column {options.text_column!r} in this {what}; columns found: {found}; pass one of them with --text-column",
            path=str(path),
            line=line,
        )
    return SourceError(
        f"no text column in this {what} (looked for {', '.join(TEXT_COLUMNS)}); columns found: {found}; "
        "name the text column with --text-column",
        path=str(path),
        line=line,
    )


def record_items(
    record: Mapping,
    columns: _Columns,
    *,
    path: Path,
    origin: str,
    line: int,
    label: str,
    fallback_title: str,
    options: ReadOptions,
) -> Iterator[Item]:
    """Turn one JSONL object or CSV row into a document or an image source (or a ``SourceError``)."""
    if columns.image is not None:
        yield _image_record(record, columns, path=path, origin=origin, line=line, label=label)
        return
    if columns.text is None or not has_field(record, columns.text):
        yield _missing_text_column(path, list(record), options, line, "record" if label.startswith("line") else "file")
        return
    text = as_text(field_value(record, columns.text))
    if text is None:
        yield SourceError(
            f"{label}: column {columns.text!r} holds a {type(field_value(record, columns.text)).__name__}, not text; "
            "point --text-column at a text field (a.b reaches nested fields)",
            path=str(path),
            line=line,
        )
        return
    if not text.strip():
        yield SourceError(
            f"{label}: empty text in column {columns.text!r}; fill it in or drop the record", path=str(path), line=line
        )
        return
    record_id = field_value(record, columns.id) if columns.id else None
    title = as_text(field_value(record, columns.title)) if columns.title else None
    title = (title or "").strip() or (str(record_id) if record_id not in (None, "") else fallback_title)
    key = None if record_id in (None, "") else f"{record_id}\x1f{text}"
    metadata = small_metadata(record, exclude=(columns.text, columns.title))
    yield from document_parts(split_long_text([text]), origin, title, key=key, metadata=metadata)


def _image_record(record: Mapping, columns: _Columns, *, path: Path, origin: str, line: int, label: str) -> Item:
    reference = field_value(record, columns.image)
    if not isinstance(reference, str) or not reference.strip():
        return SourceError(
            f"{label}: no image path in column {columns.image!r}; fill it in or drop the record",
            path=str(path),
            line=line,
        )
    caption = as_text(field_value(record, columns.caption)) if columns.caption else ""
    if caption is None:
        return SourceError(
            f"{label}: caption column {columns.caption!r} is not text; pass --caption-column", path=str(path), line=line
        )
    title = as_text(field_value(record, columns.title)) if columns.title else None
    metadata = small_metadata(record, exclude=(columns.image, columns.caption, columns.title))
    return image_source(
        reference, caption.strip(), manifest=path, origin=origin, line=line, label=label, title=title, metadata=metadata
    )


def read_jsonl(path: Path, options: ReadOptions = ReadOptions()) -> Iterator[Item]:
    """Read a JSONL file: one document per object, or one image per object when it is an image manifest.

    Origins are ``path:LINE``.
    """
    columns: _Columns | None = None
    for item in iter_json_records(path):
        if isinstance(item, SourceError):
            yield item
            continue
        number, record = item
        if columns is None:
            columns = _choose_columns(record, options)
            if columns.image is None and (columns.text is None or not has_field(record, columns.text)):
                # The first record has no text column: the file as a whole needs --text-column.
                yield _missing_text_column(path, list(record), options, number, "file")
                return
        record_columns = columns
        if columns.text is not None and not has_field(record, columns.text) and options.text_column is None:
            record_columns = _choose_columns(record, options)  # JSONL records need not share one set of keys
        yield from record_items(
            record,
            record_columns,
            path=path,
            origin=f"{path}:{number}",
            line=number,
            label=f"line {number}",
            fallback_title=f"{path.name}:{number}",
            options=options,
        )


def read_csv(path: Path, options: ReadOptions = ReadOptions()) -> Iterator[Item]:
    """Read a CSV/TSV file with a header: one document per row, or one image per row for an image manifest.

    Origins are ``path#ROW`` (data rows counted from 1).
    """
    columns: _Columns | None = None
    for item in iter_csv_rows(path):
        if isinstance(item, SourceError):
            yield item
            if item.line == 1 or item.line is None:
                return
            continue
        row, line, record = item
        if columns is None:
            columns = _choose_columns(record, options)
            if columns.image is None and (columns.text is None or columns.text not in record):
                yield _missing_text_column(path, list(record), options, 1, "file")
                return
            if columns.image is not None and columns.image not in record:
                found = ", ".join(repr(c) for c in record)
                yield SourceError(
                    f"no column {columns.image!r}; columns found: {found}; pass one with --image-column",
                    path=str(path),
                    line=1,
                )
                return
        yield from record_items(
            record,
            columns,
            path=path,
            origin=f"{path}#{row}",
            line=line,
            label=f"row {row}",
            fallback_title=f"{path.name}#{row}",
            options=options,
        )


# ---------------------------------------------------------------- images


def image_source(
    reference: str,
    caption: str,
    *,
    manifest: Path,
    origin: str,
    line: int | None,
    label: str,
    title: str | None = None,
    metadata: dict | None = None,
    **kwargs,
) -> Item:
    """Load and verify the image a manifest names, and return its ``Source`` (or the ``SourceError``).

    ``reference`` is resolved from the manifest's folder unless absolute. The id hashes the file's bytes
    and the caption; ``image_path`` is stored absolute.
    """
    image_path = Path(reference.strip()).expanduser()
    if not image_path.is_absolute():
        image_path = manifest.parent / image_path
    image_path = image_path.resolve()
    where = f"{label}: image {reference!r}"
    if not image_path.exists():
        return SourceError(
            f"{where} not found (looked for {image_path}); fix the path (relative paths start at the manifest's folder) or drop the record",
            path=str(manifest),
            line=line,
        )
    if not image_path.is_file():
        return SourceError(
            f"{where} is not a file ({image_path}); point it at an image file", path=str(manifest), line=line
        )
    try:
        with open_binary(image_path) as f:
            data = f.read()
    except OSError as e:
        return SourceError(
            f"{where} cannot be read ({e.strerror or e}); check its permissions", path=str(manifest), line=line
        )
    info, problem = verify_image(data)
    if problem is not None:
        return SourceError(f"{where} {problem} ({image_path})", path=str(manifest), line=line)
    return Source.image(
        data,
        caption,
        origin,
        str(image_path),
        title=(title or "").strip() or image_path.name,
        metadata={**info, **(metadata or {})},
        **kwargs,
    )


def verify_image(data: bytes) -> tuple[dict, str | None]:
    """Check image bytes with Pillow; return ``(info, problem)``: width/height/format, and what is wrong or ``None``."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        return {}, "is an empty file; re-export the image or drop the record"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
        # verify() checks structure only; decoding the pixels also catches a truncated JPEG.
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            info = {"width": image.width, "height": image.height, "format": image.format}
    except UnidentifiedImageError:
        return {}, "is not an image Pillow can read; convert it to PNG or JPEG"
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        return {}, f"is truncated or corrupt ({e}); re-export the image or drop the record"
    return info, None
