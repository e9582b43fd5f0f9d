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
_STRAY_NULS = 4
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


def sniff_problem(path: Path, *, stray_nul: bool = False) -> SourceError | None:
    """Return why the start of ``path`` is not UTF-8 text (empty, binary, UTF-16), or ``None``.

    With ``stray_nul`` (files read line by line, where one bad line is skipped alone) a few NUL bytes do not make
    the file binary; more than ``_STRAY_NULS`` that are also more than one in a hundred bytes do.
    """
    with open_binary(path) as f:
        head = f.read(_SNIFF_BYTES)
    if not head:
        return SourceError("the file is empty; remove it or add text", path=str(path))
    return _binary_problem(path, head, 0, stray_nul=stray_nul)


def _binary_problem(path: Path, chunk: bytes, offset: int, *, stray_nul: bool = False) -> SourceError | None:
    if offset == 0 and chunk[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return SourceError(
            "the file is UTF-16 encoded; re-encode it to UTF-8 (e.g. `iconv -f utf-16 -t utf-8`)", path=str(path)
        )
    nul = chunk.find(b"\x00")
    if nul >= 0 and (not stray_nul or chunk.count(b"\x00") > max(_STRAY_NULS, len(chunk) // 100)):
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


class LineReader:
    """Iterate the decoded lines of a file (line endings kept), noting the lines that are not UTF-8.

    A line that is not UTF-8 is decoded with replacement characters and recorded in ``bad_lines``
    (line number -> (byte offset, bad bytes)), so that a CSV or JSONL reader can report that record and go on.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad_lines: dict[int, tuple[int, bytes]] = {}
        # Lines holding a NUL byte (line number -> byte offset): also in ``bad_lines``, decoded without the NULs.
        self.nul_lines: dict[int, int] = {}
        self.line_number = 0

    def __iter__(self) -> Iterator[str]:
        offset = 0
        with open_binary(self.path) as f:
            for raw in f:
                self.line_number += 1
                data = raw[3:] if self.line_number == 1 and raw.startswith(codecs.BOM_UTF8) else raw
                skipped = len(raw) - len(data)
                nul = data.find(b"\x00")
                if nul >= 0:
                    self.nul_lines[self.line_number] = offset + skipped + nul
                    self.bad_lines[self.line_number] = (offset + skipped + nul, b"\x00")
                    data = data.replace(b"\x00", b"")
                try:
                    line = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    self.bad_lines.setdefault(self.line_number, (offset + skipped + e.start, data[e.start : e.end]))
                    line = data.decode("utf-8", errors="replace")
                offset += len(raw)
                yield line


def iter_json_records(path: Path) -> Iterator[tuple[int, dict] | SourceError]:
    """Yield ``(line, object)`` for each JSON object line of a JSONL file, or a ``SourceError`` per bad line."""
    problem = sniff_problem(path, stray_nul=True)
    if problem is not None:
        yield problem
        return
    lines = LineReader(path)
    records = 0
    for number, line in enumerate(lines, start=1):
        if number in lines.bad_lines:
            yield _line_problem(path, lines, number, f"line {number}")
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
    A row with a NUL byte, bytes that are not UTF-8 or broken quoting is reported and skipped, and the rows after
    it keep their own text: a quote that is never closed is reported at the line that opened it, and reading goes
    on from the next line instead of swallowing the rest of the file into one field.
    """
    problem = sniff_problem(path, stray_nul=True)
    if problem is not None:
        yield problem
        return
    lines = LineReader(path)
    line_iter = iter(lines)
    header_line = next(line_iter, "")
    if 1 in lines.bad_lines:
        yield _line_problem(path, lines, 1, "header")
        return
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff_delimiter(header_line)
    _raise_field_limit()
    header = [name.strip() for name in next(csv.reader([header_line], delimiter=delimiter), [])]
    if not any(header):
        yield SourceError("the first line (the header) is empty; put the column names there", path=str(path), line=1)
        return
    row = 0
    for first, last, values in _csv_records(line_iter, delimiter, len(header)):
        if values is None:
            row += 1
            swallowed = f"lines {first + 1}-{last}" if last > first else "the end of the file"
            yield SourceError(
                f"row {row}: a quote opened on this line is never closed (it would swallow {swallowed} into one "
                "field); close or remove the quote: this row is skipped and the lines after it are read as rows of "
                "their own",
                path=str(path), line=first,
            )
            continue
        if isinstance(values, str):
            row += 1
            yield SourceError(f"row {row}: malformed CSV ({values}); fix the quoting of this row", path=str(path),
                              line=first)
            continue
        if not values or not any(v.strip() for v in values):
            continue
        row += 1
        bad_line = next((n for n in range(first, last + 1) if n in lines.bad_lines), None)
        if bad_line is not None:
            yield _line_problem(path, lines, bad_line, f"row {row}")
            continue
        if len(values) != len(header):
            yield SourceError(
                f"row {row} has {len(values)} fields but the header has {len(header)} ({', '.join(header)}); "
                f"quote values that contain {delimiter!r} or a quote, or fix the row",
                path=str(path),
                line=last,
            )
            continue
        yield row, last, dict(zip(header, values, strict=True))
    if row == 0:
        yield SourceError("the file has a header but no rows; add rows or remove it", path=str(path))


# A quoted field may span lines; one spanning more than this is read as a quote that was never closed.
MAX_RECORD_LINES = 10_000
MAX_RECORD_CHARS = 16 << 20


def _csv_records(lines: Iterator[str], delimiter: str, width: int) -> Iterator[tuple[int, int, list[str] | str | None]]:
    """Group the physical lines after the header into CSV records: ``(first line, last line, fields)``.

    A record ends at a line end outside quotes; ``fields`` is the parsed list, or what is wrong with a one-line
    record's quoting. A quote that is never closed — still open at the end of the file (or after
    ``MAX_RECORD_LINES`` lines or ``MAX_RECORD_CHARS`` characters), or closed lines later in a way that leaves no
    well-formed record of ``width`` fields — comes as ``(first line, last line read, None)``, and grouping starts
    again from the line after its first.
    """
    pending: list[str] = []  # lines read ahead while a quoted field was open, to be grouped again
    number = 1
    source = iter(lines)
    while True:
        line = pending.pop() if pending else next(source, None)
        if line is None:
            return
        number += 1
        first, parts, chars = number, [line], len(line)
        in_quotes = _ends_in_quotes(line, delimiter, False)
        while in_quotes and len(parts) < MAX_RECORD_LINES and chars < MAX_RECORD_CHARS:
            following = pending.pop() if pending else next(source, None)
            if following is None:
                break
            parts.append(following)
            chars += len(following)
            in_quotes = _ends_in_quotes(following, delimiter, True)
        fields = None if in_quotes else _parse_record("".join(parts), delimiter)
        if len(parts) > 1 and (fields is None or isinstance(fields, str) or len(fields) != width):
            yield first, first + len(parts) - 1, None
            pending.extend(reversed(parts[1:]))
            continue
        number = first + len(parts) - 1
        yield first, number, fields


def _ends_in_quotes(line: str, delimiter: str, in_quotes: bool) -> bool:
    """Whether a CSV quoted field is still open at the end of ``line`` (given whether one was open at its start).

    A quote opens a field only at the field's start; elsewhere it is a literal character, as the csv module reads it.
    """
    if '"' not in line:
        return in_quotes
    at_field_start = not in_quotes
    index, size = 0, len(line)
    while index < size:
        char = line[index]
        if in_quotes:
            if char == '"':
                if line.startswith('"', index + 1):
                    index += 2
                    continue
                in_quotes = False
        elif char == '"' and at_field_start:
            in_quotes = True
        at_field_start = not in_quotes and char in (delimiter, "\n", "\r")
        index += 1
    return in_quotes


def _parse_record(text: str, delimiter: str) -> list[str] | str:
    """Return the fields of one CSV record, or what is wrong with its quoting."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as e:
        return str(e)
    if len(rows) > 1:
        return "a line end outside quotes inside one record"
    return rows[0] if rows else []


def _line_problem(path: Path, lines: LineReader, number: int, label: str) -> SourceError:
    """Return the ``SourceError`` for a line with a NUL byte or bytes that are not UTF-8."""
    if number in lines.nul_lines:
        return SourceError(
            f"{label}: a NUL byte (0x00) at byte offset {lines.nul_lines[number]}; remove it (e.g. `tr -d '\\000'`) "
            "or fix the row",
            path=str(path), line=number,
        )
    return encoding_error(path, *lines.bad_lines[number], line=number, label=label)


def _sniff_delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _raise_field_limit() -> None:
    # The default (128 KiB) rejects long text cells; documents are cut into parts later anyway.
    if csv.field_size_limit() < 2**31 - 1:
        csv.field_size_limit(2**31 - 1)


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
    value = field_value(record, columns.text)
    if isinstance(value, (bool, int, float)):
        kind = "true/false" if isinstance(value, bool) else "a number"
        yield SourceError(
            f"{label}: column {columns.text!r} holds {kind} ({json.dumps(value)}), not text; write it as a JSON string "
            "if it is the text, or point --text-column at the text field",
            path=str(path),
            line=line,
        )
        return
    text = as_text(value)
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
