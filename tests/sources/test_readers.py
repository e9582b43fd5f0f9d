"""Source readers: every format, every kind of bad input, and stable ids on re-reading."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from PIL import Image

from kgmm.errors import SourceError
from kgmm.schema import Source
from kgmm.sources import FORMATS, count_records, detect_format, read_sources
from kgmm.sources import files as source_files


def read(*paths, **kwargs) -> tuple[list[Source], list[SourceError]]:
    items = list(read_sources([str(p) for p in paths], **kwargs))
    return [i for i in items if isinstance(i, Source)], [i for i in items if isinstance(i, SourceError)]


def png_bytes(colour: str = "red", size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(colour: str = "blue") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- plain text


def test_read_sources_text_folder_walks_sorted_and_skips_hidden(tmp_path):
    (tmp_path / "b.txt").write_text("Second note.", encoding="utf-8")
    (tmp_path / "a.md").write_text("# First\n\nA note.", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("Nested note.", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("secret", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "d.txt").write_text("repo internals", encoding="utf-8")
    (tmp_path / "photo.png").write_bytes(png_bytes())

    sources, errors = read(tmp_path)

    assert errors == []
    assert [s.title for s in sources] == ["a.md", "b.txt", "c.txt"]
    assert sources[0].text == "# First\n\nA note."
    assert sources[0].origin == str(tmp_path / "a.md")
    assert all(s.kind == "document" and s.id.startswith("doc:") for s in sources)


def test_read_sources_text_passes_quotes_backticks_braces_and_cypher_unchanged(tmp_path):
    text = "MATCH (n) DETACH DELETE n; RETURN 'x' // \"quoted\" `ticks` {braces} $param \\ back\\slash\n"
    (tmp_path / "tricky.txt").write_text(text, encoding="utf-8")
    write_jsonl(tmp_path / "tricky.jsonl", [{"text": text}])

    sources, errors = read(tmp_path / "tricky.txt", tmp_path / "tricky.jsonl")

    assert errors == []
    assert [s.text for s in sources] == [text, text]


def test_read_sources_rereading_gives_identical_ids(tmp_path):
    (tmp_path / "a.txt").write_text("Aspirin treats headache.", encoding="utf-8")
    write_jsonl(tmp_path / "r.jsonl", [{"id": 1, "text": "One."}, {"id": 2, "text": "Two."}])
    (tmp_path / "r.csv").write_text("id,text\n1,One.\n2,Two.\n", encoding="utf-8")
    (tmp_path / "img.png").write_bytes(png_bytes())
    write_jsonl(tmp_path / "m.jsonl", [{"image": "img.png", "caption": "A red square."}])

    first = [s.id for s in read(tmp_path)[0]]
    second = [s.id for s in read(tmp_path)[0]]

    assert len(first) == 6 and first == second
    assert len(set(first)) == 4  # the same record (id and text) in the JSONL and the CSV is one source


def test_read_sources_empty_file_is_an_error_and_others_still_come(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("   \n\n", encoding="utf-8")
    (tmp_path / "good.txt").write_text("Fine.", encoding="utf-8")

    sources, errors = read(tmp_path)

    assert [s.title for s in sources] == ["good.txt"]
    messages = {Path(e.path).name: str(e) for e in errors}
    assert "empty" in messages["empty.txt"] and str(tmp_path / "empty.txt") in messages["empty.txt"]
    assert "only whitespace" in messages["blank.txt"]


def test_read_sources_binary_file_is_an_error(tmp_path):
    (tmp_path / "blob.txt").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    (tmp_path / "controls.txt").write_bytes(bytes([1, 2, 3, 4, 5, 6, 7, 14, 15, 16]) * 50)
    (tmp_path / "good.txt").write_text("Fine.", encoding="utf-8")

    sources, errors = read(tmp_path)

    assert [s.title for s in sources] == ["good.txt"]
    assert len(errors) == 2
    blob = next(e for e in errors if e.path.endswith("blob.txt"))
    assert "binary" in str(blob) and "NUL byte at byte offset 4" in str(blob)
    assert "binary" in str(next(e for e in errors if e.path.endswith("controls.txt")))


def test_read_sources_invalid_utf8_names_byte_offset_and_fix(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("Café au lait.".encode("latin-1"))
    (tmp_path / "good.txt").write_text("Fine.", encoding="utf-8")

    sources, errors = read(tmp_path)

    assert [s.title for s in sources] == ["good.txt"]
    (error,) = errors
    assert error.path == str(tmp_path / "latin1.txt")
    assert "byte offset 3" in str(error) and "0xe9" in str(error)
    assert "re-encode" in str(error) and "UTF-8" in str(error)


def test_read_sources_utf16_file_says_reencode(tmp_path):
    (tmp_path / "wide.txt").write_bytes("Hello".encode("utf-16"))

    _, (error,) = read(tmp_path / "wide.txt")

    assert "UTF-16" in str(error) and "re-encode" in str(error)


def test_read_sources_large_text_file_is_split_into_stable_parts(tmp_path):
    paragraph = ("Metformin lowers glucose in type 2 diabetes. " * 8).strip()
    block = "\n\n".join(f"{paragraph} Paragraph {i}." for i in range(1000)) + "\n\n"
    path = tmp_path / "big.txt"
    with path.open("w", encoding="utf-8") as f:
        while f.tell() < 50_000_000:
            f.write(block)
    text = path.read_text(encoding="utf-8")

    start = time.perf_counter()
    sources, errors = read(path)
    elapsed = time.perf_counter() - start

    assert errors == []
    assert len(sources) > 450
    assert all(len(s.text) <= source_files.MAX_DOCUMENT_CHARS for s in sources)
    assert "".join(s.text for s in sources) == text
    assert all(s.text.endswith("\n\n") for s in sources[:-1])  # cut at paragraph ends
    assert [s.origin for s in sources[:2]] == [f"{path}#part-1", f"{path}#part-2"]
    assert len({s.id for s in sources}) == len(sources)  # equal parts of one file stay distinct
    assert [s.id for s in read(path)[0]] == [s.id for s in sources]
    assert elapsed < 10


def test_split_long_text_falls_back_to_sentences_then_words():
    text = "Short sentence here. " * 20
    parts = list(source_files.split_long_text([text], max_chars=50))
    assert "".join(parts) == text
    assert all(len(p) <= 50 and p.endswith(". ") for p in parts[:-1])

    words = "word " * 40
    parts = list(source_files.split_long_text([words], max_chars=32))
    assert "".join(parts) == words and all(p.endswith(" ") for p in parts[:-1])


def test_read_sources_nonexistent_path_is_an_error_and_others_continue(tmp_path):
    (tmp_path / "good.txt").write_text("Fine.", encoding="utf-8")
    missing = tmp_path / "nope" / "missing.txt"

    sources, errors = read(missing, tmp_path / "good.txt")

    assert len(sources) == 1
    (error,) = errors
    assert str(missing) in str(error) and "no such file" in str(error)


def test_read_sources_unreadable_path_is_an_error(tmp_path, monkeypatch):
    locked = tmp_path / "locked.txt"
    locked.write_text("secret", encoding="utf-8")
    (tmp_path / "good.txt").write_text("Fine.", encoding="utf-8")
    real_open = source_files.open_binary

    def deny(path):
        if Path(path).name == "locked.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(source_files, "open_binary", deny)

    sources, errors = read(tmp_path)

    assert [s.title for s in sources] == ["good.txt"]
    (error,) = errors
    assert str(locked) in str(error) and "Permission denied" in str(error)


def test_read_sources_unknown_format_raises_listing_choices():
    with pytest.raises(SourceError) as info:
        read_sources(["x"], fmt="docx")
    assert "docx" in str(info.value) and all(name in str(info.value) for name in FORMATS)


def test_read_sources_limit_counts_sources_not_errors(tmp_path):
    write_jsonl(tmp_path / "r.jsonl", ["{bad", {"text": "One."}, {"text": "Two."}, {"text": "Three."}])

    sources, errors = read(tmp_path / "r.jsonl", limit=2)

    assert [s.text for s in sources] == ["One.", "Two."] and len(errors) == 1
    assert read(tmp_path / "r.jsonl", limit=0) == ([], [])


# ---------------------------------------------------------------- JSONL


def test_read_sources_jsonl_records_with_title_and_id(tmp_path):
    path = write_jsonl(
        tmp_path / "notes.jsonl",
        [{"id": "n1", "title": "First", "body": "Fever and cough.", "ward": "A"}, "", {"id": "n2", "body": "Rash."}],
    )

    sources, errors = read(path)

    assert errors == []
    assert [(s.origin, s.title, s.text) for s in sources] == [
        (f"{path}:1", "First", "Fever and cough."),
        (f"{path}:3", "n2", "Rash."),
    ]
    assert sources[0].metadata == {"id": "n1", "ward": "A"}


def test_read_sources_jsonl_malformed_line_yields_error_and_continues(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "Before."}, '{"text": "broken', "[1, 2]", {"text": "After."}])

    sources, errors = read(path)

    assert [s.text for s in sources] == ["Before.", "After."]
    assert [e.line for e in errors] == [2, 3]
    assert str(errors[0]).startswith(f"{path}:2: invalid JSON") and "fix or remove" in str(errors[0])
    assert "JSON object" in str(errors[1])


def test_read_sources_jsonl_missing_text_column_lists_keys(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": "Good."}, {"summary": "No text key", "id": 3}, {"text": ""}])

    sources, errors = read(path)

    assert [s.text for s in sources] == ["Good."]
    missing, empty = errors
    assert missing.line == 2 and "'summary'" in str(missing) and "--text-column" in str(missing)
    assert empty.line == 3 and "empty text" in str(empty)


def test_read_sources_jsonl_without_text_column_is_one_file_error(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"summary": f"Record {i}."} for i in range(50)])

    sources, (error,) = read(path)

    assert sources == [] and error.line == 1
    assert "no text column" in str(error) and "'summary'" in str(error) and "--text-column" in str(error)


def test_read_sources_long_records_are_split_into_parts(tmp_path):
    long_text = "Aspirin reduces fever in adults. " * 6000  # about 200,000 characters
    jsonl = write_jsonl(tmp_path / "r.jsonl", [{"id": "a", "text": long_text}, {"text": "Short."}])
    csv_path = tmp_path / "r.csv"
    csv_path.write_text(f"text\n{long_text}\n", encoding="utf-8")

    sources, errors = read(jsonl, csv_path)

    assert errors == []
    parts = [s for s in sources if s.origin.startswith(f"{jsonl}:1#part-")]
    assert len(parts) == 2 and "".join(p.text for p in parts) == long_text
    assert [s.origin for s in sources if s.origin.startswith(str(csv_path))] == [
        f"{csv_path}#1#part-1",
        f"{csv_path}#1#part-2",
    ]
    assert all(len(s.text) <= source_files.MAX_DOCUMENT_CHARS for s in sources)


def test_read_sources_accepts_a_single_path(tmp_path):
    (tmp_path / "a.txt").write_text("One file.", encoding="utf-8")
    assert [s.text for s in read_sources(tmp_path / "a.txt")] == ["One file."]
    assert count_records(str(tmp_path / "a.txt")) == 1


def test_read_sources_jsonl_text_column_option_and_nested_field(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"note": {"en": "Nested text."}, "text": "ignored"}])

    sources, _ = read(path, text_column="note.en")

    assert [s.text for s in sources] == ["Nested text."]
    _, (error,) = read(path, text_column="summary")
    assert "no column 'summary'" in str(error) and "'note'" in str(error) and "--text-column" in str(error)


def test_read_sources_jsonl_invalid_utf8_line_names_line_and_offset(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n{"text": "also ok"}\n')

    sources, (error,) = read(path)

    assert [s.text for s in sources] == ["ok", "also ok"]
    assert error.line == 2 and "byte offset 28" in str(error) and "re-encode" in str(error)


# ---------------------------------------------------------------- CSV


def test_read_sources_csv_rows_are_documents_with_row_origins(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text('id,title,abstract\n7,Paper,"Aspirin, 81 mg, prevents ""clots""."\n8,,Second.\n', encoding="utf-8")

    sources, errors = read(path)

    assert errors == []
    assert [(s.origin, s.title, s.text) for s in sources] == [
        (f"{path}#1", "Paper", 'Aspirin, 81 mg, prevents "clots".'),
        (f"{path}#2", "8", "Second."),
    ]


def test_read_sources_tsv_is_read_with_tabs(tmp_path):
    path = tmp_path / "notes.tsv"
    path.write_text("text\tsource\nA, b and c.\tweb\n", encoding="utf-8")

    sources, errors = read(path)

    assert errors == [] and [s.text for s in sources] == ["A, b and c."]


def test_read_sources_csv_wrong_column_count_names_row_and_continues(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,text\n1,Good one.\n2,Unquoted, comma, here\n3,Good three.\n", encoding="utf-8")

    sources, (error,) = read(path)

    assert [s.text for s in sources] == ["Good one.", "Good three."]
    assert error.line == 3 and str(error).startswith(f"{path}:3: row 2 has 4 fields but the header has 2")
    assert "quote" in str(error)


def test_read_sources_csv_missing_text_column_lists_columns_and_flag(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,summary,score\n1,Something,3\n", encoding="utf-8")
    good = tmp_path / "s.csv"
    good.write_text("text\nStill read.\n", encoding="utf-8")

    sources, (error,) = read(path, good)

    assert [s.text for s in sources] == ["Still read."]
    assert error.path == str(path)
    assert "'id', 'summary', 'score'" in str(error) and "--text-column" in str(error)
    assert [s.text for s in read(path, text_column="summary")[0]] == ["Something"]


def test_read_sources_csv_invalid_utf8_row_and_header_only(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"text\nfine\nna\xefve\nfine too\n")
    header_only = tmp_path / "h.csv"
    header_only.write_text("text\n", encoding="utf-8")

    sources, errors = read(path, header_only)

    assert [s.text for s in sources] == ["fine", "fine too"]
    bad, empty = errors
    assert bad.line == 3 and "row 2" in str(bad) and "byte offset 12" in str(bad)
    assert empty.path == str(header_only) and "no rows" in str(empty)


def test_read_sources_csv_unterminated_quote_is_reported_and_later_rows_keep_their_text(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('id,text\n1,"Aspirin treats headache.\n2,Metformin treats diabetes.\n3,"Ibuprofen, 400 mg"\n'
                    "4,Fever and cough.\n", encoding="utf-8")

    sources, (error,) = read(path)

    assert [s.text for s in sources] == ["Metformin treats diabetes.", "Ibuprofen, 400 mg", "Fever and cough."]
    assert error.line == 2 and "row 1: a quote opened on this line is never closed" in str(error)
    assert [s.origin for s in sources] == [f"{path}#2", f"{path}#3", f"{path}#4"]


def test_read_sources_csv_multiline_fields_and_literal_quotes_stay_one_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('id,text\n1,"First line,\nsecond line."\n2,A 12" pizza\n3,He said ""no"" twice\n',
                    encoding="utf-8")

    sources, errors = read(path)

    assert errors == []
    assert [s.text for s in sources] == ["First line,\nsecond line.", 'A 12" pizza', 'He said ""no"" twice']


def test_read_sources_csv_nul_byte_rejects_only_its_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"id,text\n1,Aspirin treats headache.\n2,Metformin \x00 treats diabetes.\n3,Ibuprofen.\n")
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"id,text\n" + bytes(range(256)) * 8)

    sources, errors = read(path, binary)

    assert [s.text for s in sources] == ["Aspirin treats headache.", "Ibuprofen."]
    nul, whole_file = errors
    assert nul.line == 3 and "row 2: a NUL byte (0x00) at byte offset 47" in str(nul)
    assert whole_file.path == str(binary) and "binary file" in str(whole_file)


def test_read_sources_jsonl_number_as_text_is_reported(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"text": 12345}, {"text": True}, {"text": "Real text."}])

    sources, errors = read(path)

    assert [s.text for s in sources] == ["Real text."]
    assert [e.line for e in errors] == [1, 2]
    assert "holds a number (12345), not text" in str(errors[0]) and "true/false" in str(errors[1])


# ---------------------------------------------------------------- image manifests


def test_read_sources_image_manifest_jsonl_and_csv(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "red.png").write_bytes(png_bytes("red"))
    (tmp_path / "blue.jpg").write_bytes(jpeg_bytes())
    manifest = write_jsonl(
        tmp_path / "photos.jsonl",
        [{"image": "imgs/red.png", "caption": "A red square."}, {"image": str(tmp_path / "blue.jpg"), "caption": ""}],
    )
    csv_manifest = tmp_path / "photos.csv"
    csv_manifest.write_text("file,alt_text,title\nimgs/red.png,Crimson tile,Red\n", encoding="utf-8")

    sources, errors = read(manifest, csv_manifest)

    assert errors == []
    red, blue, red_csv = sources
    assert red.kind == "image" and red.id.startswith("img:") and red.text == "A red square."
    assert red.image_path == str((tmp_path / "imgs" / "red.png").resolve())
    assert red.origin == f"{manifest}:1" and red.title == "red.png"
    assert red.metadata == {"width": 8, "height": 6, "format": "PNG"}
    assert blue.text == "" and blue.metadata["format"] == "JPEG"  # no caption: still recorded
    assert red_csv.text == "Crimson tile" and red_csv.title == "Red" and red_csv.origin == f"{csv_manifest}#1"
    assert red_csv.id != red.id  # same pixels, another caption


def test_read_sources_image_id_follows_bytes_not_path(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes("red"))
    (tmp_path / "b.png").write_bytes(png_bytes("red"))
    (tmp_path / "c.png").write_bytes(png_bytes("green"))
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"image": f"{n}.png", "caption": "Square."} for n in "abc"])

    a, b, c = read(manifest)[0]

    assert a.id == b.id != c.id


def test_read_sources_image_manifest_missing_and_corrupt_images(tmp_path):
    (tmp_path / "ok.png").write_bytes(png_bytes())
    (tmp_path / "cut.png").write_bytes(png_bytes(size=(64, 64))[:60])
    jpeg = jpeg_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "fake.png").write_text("not an image", encoding="utf-8")
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"image": "ok.png", "caption": "Fine."},
            {"image": "gone.png", "caption": "Missing."},
            {"image": "cut.png", "caption": "Truncated PNG."},
            {"image": "cut.jpg", "caption": "Truncated JPEG."},
            {"image": "fake.png", "caption": "Text file."},
            {"image": "ok.png", "caption": "Fine again."},
        ],
    )

    sources, errors = read(manifest)

    assert [s.text for s in sources] == ["Fine.", "Fine again."]
    assert [e.line for e in errors] == [2, 3, 4, 5]
    assert all(e.path == str(manifest) for e in errors)
    missing, cut_png, cut_jpg, fake = (str(e) for e in errors)
    assert "'gone.png' not found" in missing and str(tmp_path / "gone.png") in missing
    assert "'cut.png'" in cut_png and "truncated or corrupt" in cut_png
    assert "'cut.jpg'" in cut_jpg and "truncated or corrupt" in cut_jpg
    assert "'fake.png'" in fake and "not an image" in fake


# ---------------------------------------------------------------- formats and counts


def test_detect_format_by_suffix_and_layout(tmp_path):
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    (tmp_path / "README").write_text("plain words", encoding="utf-8")
    (tmp_path / "r.jsonl").write_text('{"text": "x"}\n', encoding="utf-8")
    (tmp_path / "r.csv").write_text("text\nx\n", encoding="utf-8")
    (tmp_path / "p.png").write_bytes(png_bytes())
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" * 100)

    assert [detect_format(tmp_path / n) for n in ("a.txt", "README", "r.jsonl", "r.csv")] == [
        "text",
        "text",
        "jsonl",
        "csv",
    ]
    assert detect_format(tmp_path) == "folder"
    with pytest.raises(SourceError, match="manifest"):
        detect_format(tmp_path / "p.png")
    with pytest.raises(SourceError, match="unsupported file type .bin"):
        detect_format(tmp_path / "blob.bin")
    with pytest.raises(SourceError, match="no such file"):
        detect_format(tmp_path / "missing.txt")


def test_count_records_estimates_what_read_sources_yields(tmp_path):
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    write_jsonl(tmp_path / "r.jsonl", [{"text": "1"}, {"text": "2"}, {"text": "3"}])
    (tmp_path / "r.csv").write_text("text\n1\n2\n", encoding="utf-8")

    assert count_records([tmp_path]) == 6 == len(read(tmp_path)[0])
    assert count_records([tmp_path / "missing"]) == 0


# ---------------------------------------------------------------- data sets (tiny copies of their layouts)


def test_read_sources_medpix_layout(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "MPX1_synpic1.png").write_bytes(png_bytes())
    case = {
        "U_id": "MPX1",
        "TAC": ["MPX1_synpic1"],
        "MRI": None,
        "Case": {
            "History": "45 y/o man with  cough.\nFever for 3 days",
            "Findings": "CT: consolidation in the right lower lobe",
            "Differential Diagnosis": "Pneumonia\nLung cancer",
            "Case Diagnosis": "Pneumonia",
            "Discussion": "Long discussion with references.",
        },
        "Topic": {"Category": "Infection", "ACR Code": "6.2"},
    }
    description = {
        "Type": "CT",
        "U_id": "MPX1",
        "image": "MPX1_synpic1",
        "Location": "Chest",
        "Description": {
            "Caption": "Axial CT shows  consolidation.",
            "Modality": "CT - noncontrast",
            "Plane": "Axial",
            "Age": "45",
            "Sex": "male",
        },
    }
    write_jsonl(tmp_path / "data_test.jsonl", [case])
    write_jsonl(tmp_path / "descriptions_test.jsonl", [description, {**description, "image": "MPX1_missing"}])
    (tmp_path / "README.md").write_text("not a case", encoding="utf-8")

    assert detect_format(tmp_path) == "medpix"
    (document, image), (error,) = read(tmp_path)

    assert document.title == "MPX1" and document.origin == f"{tmp_path / 'data_test.jsonl'}:1"
    assert document.text == (
        "History: 45 y/o man with cough. Fever for 3 days.\n\n"
        "Findings: CT: consolidation in the right lower lobe.\n\n"
        "Differential diagnosis: Pneumonia, Lung cancer.\n\n"
        "Diagnosis: Pneumonia."
    )
    assert document.metadata["diagnosis"] == "Pneumonia" and document.metadata["differential"] == [
        "Pneumonia",
        "Lung cancer",
    ]
    assert image.title == "MPX1_synpic1" and image.text == "Axial CT shows consolidation."
    assert image.image_path == str((tmp_path / "images" / "MPX1_synpic1.png").resolve())
    assert {k: image.metadata[k] for k in ("modality", "plane", "location", "age", "sex")} == {
        "modality": "CT - noncontrast",
        "plane": "Axial",
        "location": "Chest",
        "age": "45",
        "sex": "male",
    }
    assert error.line == 2 and "MPX1_missing.png" in str(error)


def test_read_sources_fashion_layout(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(jpeg_bytes())
    header = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"
    (tmp_path / "catalogue.csv").write_text(
        f"{header}\n1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011.0,Casual,Turtle Check Men Navy Blue Shirt\n"
        f"2,Women,Apparel,Topwear,Tops,NA,,2012,NA,Same Name\n3,Women,Apparel,Topwear,Tops,Red,Summer,2012,Casual,Same Name\n",
        encoding="utf-8",
    )
    (tmp_path / "products_train.csv").write_text(
        f"{header},image\n1,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt,images/1.jpg\n",
        encoding="utf-8",
    )

    assert detect_format(tmp_path) == "fashion" and count_records([tmp_path]) == 4
    (shirt, top2, top3, photo), errors = read(tmp_path)

    assert errors == []
    assert shirt.text == shirt.subject == "Turtle Check Men Navy Blue Shirt" and shirt.subject_type == "Product"
    assert shirt.attributes == {
        "Gender": "Men",
        "Category": "Apparel",
        "SubCategory": "Topwear",
        "ArticleType": "Shirts",
        "Colour": "Navy Blue",
        "Season": "Fall",
        "Usage": "Casual",
    }
    assert shirt.metadata == {"dataset": "fashion", "product_id": "1", "year": 2011}
    assert "Colour" not in top2.attributes and "Season" not in top2.attributes and "Usage" not in top2.attributes
    assert top2.id != top3.id  # same name, different products
    assert photo.kind == "image" and photo.text == shirt.text and photo.attributes == shirt.attributes


def test_read_sources_flickr8k_layout(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "dog.jpg").write_bytes(jpeg_bytes())
    entries = [{"image": "images/dog.jpg", "captions": ["A dog runs .", "A brown dog is running on grass", "  "]}]
    (tmp_path / "captions.json").write_text(json.dumps(entries), encoding="utf-8")

    assert detect_format(tmp_path) == "flickr8k"
    (photo,), errors = read(tmp_path)

    assert errors == []
    assert photo.text == "A dog runs. A brown dog is running on grass."
    assert photo.metadata["captions"] == ["A dog runs .", "A brown dog is running on grass"]
    assert photo.origin == f"{tmp_path / 'captions.json'}#1" and photo.title == "dog.jpg"


# ---------------------------------------------------------------- the shared data sets


def test_read_sources_shared_medpix(shared_data):
    sources, errors = read(shared_data / "medpix")
    assert errors == []
    assert sum(s.kind == "document" for s in sources) == 69 and sum(s.kind == "image" for s in sources) == 200
    case = next(s for s in sources if s.title == "MPX2077")
    assert case.metadata["diagnosis"] == "Choroid Plexus Carcinoma" and "Findings: CT:" in case.text


def test_read_sources_shared_fashion_and_flickr8k(shared_data):
    catalogue, errors = read(shared_data / "fashion" / "catalogue.csv", limit=100)
    assert errors == [] and len(catalogue) == 100
    assert catalogue[0].attributes["Colour"] == "Navy Blue"
    photos, errors = read(shared_data / "fashion" / "products_train.csv", shared_data / "flickr8k")
    assert errors == [] and len(photos) == 461 + 300
    assert count_records([shared_data / "flickr8k"]) == 300


def test_walk_inputs_lists_files_with_format_and_size_then_read_inputs_reads_them(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("Fever and cough.", encoding="utf-8")
    (tmp_path / "notes" / "b.jsonl").write_text('{"text": "Rash."}\n', encoding="utf-8")
    (tmp_path / "notes" / "loop").symlink_to(tmp_path / "notes")
    from kgmm.sources import InputFile, read_inputs, walk_inputs

    found = list(walk_inputs([tmp_path / "notes", tmp_path / "missing.txt"]))
    files = [(f.path.name, f.fmt, f.size) for f in found if isinstance(f, InputFile)]
    assert files == [("a.txt", "text", 16), ("b.jsonl", "jsonl", 18)]
    assert [str(e) for e in found if isinstance(e, SourceError)] == [
        f"{tmp_path / 'missing.txt'}: no such file or folder; check the path"]
    texts = [item.text for item in read_inputs(found) if not isinstance(item, SourceError)]
    assert texts == ["Fever and cough.", "Rash."]
