"""Read diagnosis cases and the knowledge that links labels to findings.

A :class:`Case` is what a diagnosis model sees: findings observed present, findings known absent, free text,
an optional image, a few attributes (age, sex), and its label when known. Readers, by data set name:

- ``ddxplus``: a DDXPlus patients CSV (the release's ``AGE, SEX, PATHOLOGY, EVIDENCES`` columns or the
  shared slice's ``age, sex, diagnosis, features``), with ``release_evidences.json`` beside it. A patient
  answered the whole questionnaire, so every evidence not listed is absent (``closed_world``). Evidence codes
  become the medical lexicon's ids (``DDXPLUS:E_91``), so findings read from free text with the lexicon land
  on the same ids. A categorical answer (``E_204_@_V_10``) counts as the evidence present unless it is the
  question's default ("no travel"); the value itself is kept as a finding of its own (``DDXPLUS:E_204=V_10``).
- ``symptom2disease``: a CSV of free-text complaints with a label column (``label``, ``diagnosis``, ...) and
  a ``text`` column. Findings are read from the text later, by the medical lexicon (negation aware).
- ``fashion``: a fashion products CSV (``productDisplayName``, ``image`` relative to the file, and the
  catalogue columns); the label is the ``target`` column (``articleType`` by default, or ``usage``, ...), the
  text the product's title, the image its photo. :func:`read_catalogue_cases` reads ``catalogue.csv`` rows
  (no photo) the same way, as extra text-only training cases.
- ``medpix``: MedPix 2.0 ``data_test.jsonl`` cases: the text is the history, exam and findings plus the
  captions of the case's images (``descriptions_test.jsonl`` beside it), the image the case's first one in
  ``images/``, the label the case diagnosis. :func:`medpix_topics` reads the disease discussions of the
  same file (text about each diagnosis, not about the case) for a knowledge graph built from text.
- ``jsonl``: one JSON object a line, ``{"id", "label", "text", "findings": [...], "absent": [...],
  "image": path, "attributes": {...}}`` (all optional but one of text, findings or image), for any domain.

:func:`read_ddxplus_knowledge` reads the condition -> symptom/antecedent graph from
``release_conditions.json`` (with the evidences file for names). Nothing here knows a condition or an
evidence by name.
"""

from __future__ import annotations

import ast
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kgmm.errors import SourceError

DATASETS = ("ddxplus", "symptom2disease", "fashion", "medpix", "jsonl")
FASHION_TARGETS = ("articleType", "subCategory", "masterCategory", "usage", "season", "gender", "baseColour")
DDXPLUS_PREFIX = "DDXPLUS:"
MAX_TEXT_CHARS = 5_000
KNOWLEDGE_FILE = "knowledge.json"
_LABEL_COLUMNS = ("label", "pathology", "diagnosis", "diganosis", "disease", "class", "category")
_TEXT_COLUMNS = ("text", "complaint", "description", "note")


@dataclass
class Case:
    """One case to diagnose.

    Args:
        id (str): unique within its file.
        label (str, optional): the true diagnosis, when known.
        present (list of str): finding ids observed present.
        absent (list of str): finding ids known absent ("no fever").
        text (str): free text (complaint, history, caption).
        image (str, optional): path of an image.
        attributes (dict): small typed extras (``age``, ``sex``).
        closed_world (bool): every finding of the knowledge graph not listed as present is absent (a
            completed questionnaire), rather than unknown.
        line (int): 1-based line of the file it came from (0 when made in code).
    """

    id: str
    label: str | None = None
    present: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    text: str = ""
    image: str | None = None
    attributes: dict = field(default_factory=dict)
    closed_world: bool = False
    line: int = 0


@dataclass
class LabelKnowledge:
    """What a graph says about the labels: label -> findings it explains, and names for the findings.

    Args:
        edges (dict): label name -> {finding id: relation type} (``HAS_SYMPTOM``, ``HAS_RISK_FACTOR``, ...).
        finding_names (dict): finding id -> readable name.
        label_ids (dict): label name -> its entity id in the graph (when it has one).
        source (str): where the knowledge came from (a file or store), for explanations.
        edge_sources (dict): label name -> {finding id: ids of the documents that stated the edge} (a store's).
    """

    edges: dict[str, dict[str, str]] = field(default_factory=dict)
    finding_names: dict[str, str] = field(default_factory=dict)
    label_ids: dict[str, str] = field(default_factory=dict)
    source: str = ""
    edge_sources: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return sorted(self.edges)

    def to_json(self) -> dict:
        return {"edges": self.edges, "finding_names": self.finding_names, "label_ids": self.label_ids,
                "source": self.source, "edge_sources": self.edge_sources}

    @classmethod
    def from_json(cls, raw: dict) -> LabelKnowledge:
        return cls(dict(raw.get("edges", {})), dict(raw.get("finding_names", {})), dict(raw.get("label_ids", {})),
                   str(raw.get("source", "")), dict(raw.get("edge_sources", {})))


def read_cases(path: str | Path, dataset: str, *, target: str | None = None) -> list[Case]:
    """Read the cases of ``path`` in the format of ``dataset`` (one of ``DATASETS``); ``target`` is the label
    column of a ``fashion`` file (default ``articleType``).

    Raises:
        SourceError: when the file is missing, unreadable, malformed or holds no case; the message names the
            file (and line) and the expected format.
    """
    path = Path(path)
    if dataset not in DATASETS:
        raise SourceError(f"unknown case format {dataset!r}; use one of {', '.join(DATASETS)}", path=str(path))
    if path.is_dir():
        raise SourceError(f"is a directory, expected a {dataset} cases file", path=str(path))
    if not path.is_file():
        raise SourceError(f"no such {dataset} cases file; check the path", path=str(path))
    if dataset == "fashion":
        cases = list(_read_fashion(path, target or "articleType", images=True))
    elif dataset == "medpix":
        cases = list(_read_medpix(path))
    else:
        cases = list({"ddxplus": _read_ddxplus, "symptom2disease": _read_text_csv, "jsonl": _read_jsonl}[dataset](path))
    if not cases:
        raise SourceError(f"holds no {dataset} case", path=str(path))
    return cases


def _read_text(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read it ({e}); it must be UTF-8 {what}", path=str(path)) from e
    if "\x00" in text:
        raise SourceError(f"looks binary; expected UTF-8 {what}", path=str(path))
    return text


def _csv_rows(path: Path, what: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(_read_text(path, what).splitlines()))
    if not rows:
        raise SourceError(f"is empty; expected {what} with a header line", path=str(path))
    return [h.strip().lower() for h in rows[0]], rows[1:]


def _column(header: list[str], names: tuple[str, ...], path: Path, what: str) -> int:
    """Index of the first of ``names`` in ``header`` (the last column of that name when it repeats)."""
    for name in names:
        if name in header:
            return len(header) - 1 - header[::-1].index(name)
    raise SourceError(f"has no {what} column (looked for {', '.join(names)}); header: {', '.join(header)}",
                      path=str(path))


def ddxplus_id(code: str) -> str:
    """``E_91`` -> ``DDXPLUS:E_91`` (the medical lexicon's id)."""
    return code if code.startswith(DDXPLUS_PREFIX) else DDXPLUS_PREFIX + code


def ddxplus_json(path: Path, name: str) -> dict:
    file = path.parent / name
    if not file.is_file():
        raise SourceError(f"{name} must lie beside the patients file (it is part of the DDXPlus release); "
                          f"copy it to {path.parent}", path=str(path))
    try:
        raw = json.loads(_read_text(file, "JSON"))
    except json.JSONDecodeError as e:
        raise SourceError(f"is not valid JSON ({e})", path=str(file)) from e
    if not isinstance(raw, dict):
        raise SourceError("expected a JSON object keyed by code", path=str(file))
    return raw


def _read_ddxplus(path: Path) -> Iterator[Case]:
    evidences = ddxplus_json(path, "release_evidences.json")
    defaults = {code: str(spec.get("default_value")) for code, spec in evidences.items() if isinstance(spec, dict)}
    header, rows = _csv_rows(path, "a DDXPlus patients CSV")
    label_at = _column(header, ("pathology", "diagnosis"), path, "PATHOLOGY")
    evidence_at = _column(header, ("evidences", "features"), path, "EVIDENCES")
    age_at = header.index("age") if "age" in header else None
    sex_at = header.index("sex") if "sex" in header else None
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(label_at, evidence_at):
            raise SourceError(f"has {len(row)} columns, the header {len(header)}", path=str(path), line=number)
        try:
            codes = ast.literal_eval(row[evidence_at].strip() or "[]")
        except (ValueError, SyntaxError) as e:
            raise SourceError(f"the evidences column is not a list like ['E_91', 'E_55_@_V_14'] ({e})",
                              path=str(path), line=number) from e
        if not isinstance(codes, list | tuple) or not all(isinstance(c, str) for c in codes):
            raise SourceError("the evidences column must be a list of evidence codes", path=str(path), line=number)
        present: dict[str, None] = {}
        for code in codes:
            base, _, value = code.partition("_@_")
            if value:
                present[ddxplus_id(f"{base}={value}")] = None
                if value == defaults.get(base):
                    continue
            present[ddxplus_id(base)] = None
        attributes = {}
        if age_at is not None and age_at < len(row) and row[age_at].strip():
            try:
                attributes["age"] = float(row[age_at])
            except ValueError as e:
                raise SourceError(f"age {row[age_at]!r} is not a number", path=str(path), line=number) from e
        if sex_at is not None and sex_at < len(row) and row[sex_at].strip():
            attributes["sex"] = row[sex_at].strip().upper()[:1]
        label = row[label_at].strip() or None
        yield Case(f"{path.stem}:{number}", label, list(present), [], "", None, attributes, True, number)


def _read_text_csv(path: Path) -> Iterator[Case]:
    header, rows = _csv_rows(path, "a CSV of labelled complaints")
    label_at = _column(header, _LABEL_COLUMNS, path, "label")
    text_at = _column(header, _TEXT_COLUMNS, path, "text")
    id_at = header.index("id") if "id" in header else None
    for number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(label_at, text_at):
            raise SourceError(f"has {len(row)} columns, the header {len(header)}", path=str(path), line=number)
        text = " ".join(row[text_at].split())[:MAX_TEXT_CHARS]
        if not text:
            raise SourceError("empty text", path=str(path), line=number)
        identifier = row[id_at].strip() if id_at is not None and row[id_at].strip() else str(number)
        yield Case(f"{path.stem}:{identifier}:{number}", row[label_at].strip() or None, text=text, line=number)


def _read_fashion(path: Path, target: str, *, images: bool) -> Iterator[Case]:
    rows = list(csv.DictReader(_read_text(path, "a fashion products CSV").splitlines()))
    if not rows:
        raise SourceError("holds no product row (expected a header with productDisplayName, image and the "
                          "catalogue columns)", path=str(path))
    header = set(rows[0])
    for column in ("productDisplayName", target, *(("image",) if images else ())):
        if column not in header:
            hint = f"; --target is one of {', '.join(FASHION_TARGETS)}" if column == target else ""
            raise SourceError(f"has no {column!r} column{hint}", path=str(path))
    for number, row in enumerate(rows, start=2):
        title = " ".join((row.get("productDisplayName") or "").split())[:MAX_TEXT_CHARS]
        label = " ".join((row.get(target) or "").split())
        if not title:
            raise SourceError("product without a productDisplayName; fill it in or drop the row", path=str(path),
                              line=number)
        image = None
        if images:
            reference = (row.get("image") or "").strip()
            if not reference:
                raise SourceError("product without an image path; fill it in or drop the row", path=str(path),
                                  line=number)
            image = str(Path(reference) if Path(reference).is_absolute() else path.parent / reference)
        identifier = (row.get("id") or "").strip() or str(number)
        yield Case(f"fashion:{identifier}", label if label and label.upper() != "NA" else None, text=title,
                   image=image, attributes={"product_id": identifier}, line=number)


def read_catalogue_cases(path: str | Path, target: str = "articleType") -> list[Case]:
    """The rows of a fashion ``catalogue.csv`` as text-only cases (title -> ``target``)."""
    return list(_read_fashion(Path(path), target, images=False))


def _json_records(path: Path) -> Iterator[tuple[int, dict]]:
    """``(line, object)`` per JSON-object line, read by :func:`kgmm.sources.files.iter_json_records`; a case
    file is all or nothing, so its first bad line (or an empty or binary file) is raised."""
    from kgmm.sources.files import iter_json_records

    for item in iter_json_records(path):
        if isinstance(item, SourceError):
            raise item
        yield item


def _medpix_text(value) -> str:
    return " ".join(str(value or "").split())


def _read_medpix(path: Path) -> Iterator[Case]:
    captions: dict[str, list[tuple[str, str]]] = {}
    descriptions = path.parent / "descriptions_test.jsonl"
    if descriptions.is_file():
        for _, record in _json_records(descriptions):
            caption = _medpix_text((record.get("Description") or {}).get("Caption"))
            captions.setdefault(str(record.get("U_id", "")), []).append((str(record.get("image", "")), caption))
    for number, record in _json_records(path):
        case = record.get("Case")
        case_id = str(record.get("U_id") or "").strip()
        if not isinstance(case, dict) or not case_id:
            raise SourceError("not a MedPix case (needs U_id and a Case object)", path=str(path), line=number)
        parts = [_medpix_text(case.get(field)) for field in ("History", "Exam", "Findings")]
        parts += [caption for _, caption in captions.get(case_id, []) if caption]
        text = " ".join(part for part in parts if part)[:MAX_TEXT_CHARS]
        image = next((str(path.parent / "images" / f"{name}.png") for name, _ in captions.get(case_id, [])
                      if (path.parent / "images" / f"{name}.png").is_file()), None)
        label = _medpix_text(case.get("Case Diagnosis") or case.get("Title")) or None
        if not (text or image):
            raise SourceError(f"MedPix case {case_id} has no history, exam, findings or image", path=str(path),
                              line=number)
        yield Case(f"medpix:{case_id}", label, text=text, image=image, line=number)


def medpix_topics(path: str | Path) -> dict[str, str]:
    """Case diagnosis -> the text about that disease in a MedPix file (the topic's disease discussion, else
    the case's discussion): material for a label -> finding graph, not the case's own history."""
    topics: dict[str, str] = {}
    for _, record in _json_records(Path(path)):
        case, topic = record.get("Case") or {}, record.get("Topic") or {}
        label = _medpix_text(case.get("Case Diagnosis") or case.get("Title"))
        text = _medpix_text(topic.get("Disease Discussion") or case.get("Discussion"))
        if label and text:
            topics[label] = (topics.get(label, "") + " " + text).strip()[:4 * MAX_TEXT_CHARS]
    return topics


def _read_jsonl(path: Path) -> Iterator[Case]:
    for number, record in _json_records(path):
        yield case_from_record(record, path=path, line=number)


def case_from_record(record: dict, *, path: Path | None = None, line: int = 0) -> Case:
    """A :class:`Case` from a JSON-like record (see the module docstring).

    Raises:
        SourceError: when a field has the wrong type or the record holds nothing to diagnose from.
    """
    where = {"path": str(path) if path else None, "line": line or None}

    def strings(key: str) -> list[str]:
        value = record.get(key) or []
        if isinstance(value, str):
            value = [v for v in value.split(",")]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SourceError(f"{key!r} must be a list of finding ids", **where)
        return [v.strip() for v in value if v.strip()]

    text = record.get("text") or ""
    if not isinstance(text, str):
        raise SourceError("'text' must be a string", **where)
    image = record.get("image")
    if image is not None and not isinstance(image, str):
        raise SourceError("'image' must be a path", **where)
    if image and path is not None and not Path(image).is_absolute():
        image = str(path.parent / image)
    attributes = record.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise SourceError("'attributes' must be an object", **where)
    present, absent = strings("findings"), strings("absent")
    if not (text.strip() or present or absent or image):
        raise SourceError("nothing to diagnose from: give text, findings or an image", **where)
    label = record.get("label")
    return Case(str(record.get("id") or line), str(label) if label not in (None, "") else None, present, absent,
                " ".join(text.split())[:MAX_TEXT_CHARS], image or None, attributes,
                bool(record.get("closed_world", False)), line)


__all__ = ["DATASETS", "FASHION_TARGETS", "KNOWLEDGE_FILE", "Case", "medpix_topics", "read_catalogue_cases",
           "LabelKnowledge", "case_from_record", "ddxplus_id", "ddxplus_json", "read_cases"]
