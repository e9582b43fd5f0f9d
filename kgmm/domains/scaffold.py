"""``kgmm domain init``: scaffold a domain pack a user fills in, and check one.

A pack folder holds ``pack.json`` (entity types, the relation schema, which lexicons to use), the pack's own
``lexicon.tsv`` (type, name, synonyms), ``knowledge.json`` (the labels to predict and the findings each one
explains, for ``kgmm diagnose --knowledge`` and ``kgmm train diagnosis --knowledge``) and a README saying
how to fill them in. Starting ``--from`` a built-in pack copies its types, relations and lexicons, so a
hospital's pack can extend ``medical`` and a shop's ``retail``.
"""

from __future__ import annotations

import json
from pathlib import Path

from kgmm.domains import PACKS_DIR, available_domains, load_domain
from kgmm.errors import DomainError
from kgmm.schema import entity_id, is_valid_label

LEXICON_FILE = "lexicon.tsv"
KNOWLEDGE_FILE = "knowledge.json"

_LEXICON = """# {name} lexicon: one row per concept the extraction should find. Columns (TAB-separated): type (one of
# the pack's entity_types), name, synonyms ("|"-separated), class ("|"-separated, optional). Lines starting with "#"
# are comments. Ids become {name}:<type>:<name>, so rename a row only if you mean a new concept.
type\tname\tsynonyms\tclass
{finding_type}\texample finding\tfirst synonym|second synonym\t
{label_type}\texample label\t\t
"""

_README = """# Domain pack `{name}`

Made by `kgmm domain init {name}`{based}. Fill in, then check with `kgmm domain check {path}`:

1. `pack.json`: `entity_types` (the kinds of things in your texts), `relations` (which types may be linked,
   and the verbs that signal each link), `lexicons` (built-in ones by name, plus `lexicon.tsv`),
   `negation` (read "no fever" as absent).
2. `lexicon.tsv`: your vocabulary, one concept a row with its synonyms; extraction finds these in text.
3. `knowledge.json`: the labels to predict and, for each, the findings it explains
   (`{{"edges": {{label: {{finding id: relation}}}}, "finding_names": {{finding id: name}}}}`); a finding id
   of your lexicon is `{name}:<type>:<name in lower case>`.

Use it:

    kgmm ingest my-notes/ --domain {path} --store my-graph
    kgmm diagnose --knowledge {path}/knowledge.json --domain {path} --text "..."     # no labelled case needed
    kgmm train diagnosis --dataset jsonl --path cases.jsonl --knowledge {path}/knowledge.json \\
        --domain {path} --out models/{name} [--init-from models/other-domain]
"""


def init_domain(name: str, folder: str | Path | None = None, *, base: str | None = None) -> dict:
    """Write a new domain pack ``name`` into ``folder`` (default ``./name``) and return what was written.

    Args:
        name: the domain's name (letters, digits, underscores; used in entity ids).
        folder: where to write it; must not exist or be empty.
        base: a built-in pack to start from (its entity types, relations, lexicons and negation).

    Raises:
        DomainError: a bad name, an unknown base, or a folder that already holds files.
    """
    if not is_valid_label(name) or name != name.lower():
        raise DomainError(f"domain name {name!r}: use lower-case letters, digits and underscores (e.g. cardiology)")
    if name in available_domains():
        raise DomainError(f"{name!r} is a built-in domain; pick another name (or --from {name} to extend it)")
    path = Path(folder) if folder is not None else Path(name)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise DomainError(f"{path} already exists and is not an empty folder; choose another --dir")
    if base is not None and base not in available_domains():
        raise DomainError(f"no built-in domain {base!r} to start from; available: {', '.join(available_domains())}")
    if base is not None:
        raw = json.loads((PACKS_DIR / base / "pack.json").read_text(encoding="utf-8"))
        raw = {**raw, "name": name, "description": f"{name}: extends the built-in {base} pack",
               "lexicons": [*raw.get("lexicons", []), LEXICON_FILE]}
    else:
        raw = {"name": name, "description": f"{name}: describe the texts this pack reads",
               "entity_types": ["Label", "Finding"], "lexicons": [LEXICON_FILE], "negation": True,
               "relations": [{"type": "HAS_FINDING", "head": ["Label"], "tail": ["Finding"],
                              "triggers": ["have", "show", "present", "include", "cause"]}],
               "cooccurrence": {"HAS_FINDING": 0.35}}
    types = list(raw["entity_types"])
    finding_type = next((t for t in ("Finding", "Symptom", "Colour") if t in types), types[-1])
    label_type = next((t for t in ("Label", "Disease", "ArticleType") if t in types), types[0])
    finding = entity_id(name, finding_type, "example finding")
    knowledge = {"edges": {"example label": {finding: "HAS_FINDING"}}, "finding_names": {finding: "example finding"},
                 "source": f"{name} domain pack"}
    path.mkdir(parents=True, exist_ok=True)
    files = {
        "pack.json": json.dumps(raw, indent=2) + "\n",
        LEXICON_FILE: _LEXICON.format(name=name, finding_type=finding_type, label_type=label_type),
        KNOWLEDGE_FILE: json.dumps(knowledge, indent=2) + "\n",
        "README.md": _README.format(name=name, path=path, based=f" --from {base}" if base else ""),
    }
    for file, text in files.items():
        (path / file).write_text(text, encoding="utf-8")
    return {"domain": name, "path": str(path), "base": base, "files": sorted(files), **check_domain(path)}


def check_domain(folder: str | Path) -> dict:
    """Load a pack folder as kgmm will (pack.json, its lexicons, knowledge.json) and count what it holds.

    Raises:
        DomainError / SourceError: with the file and the problem, when something does not load.
    """
    from kgmm.domains.lexicon_index import load_lexicon_index

    path = Path(folder)
    load_domain.cache_clear()
    pack = load_domain(str(path))
    if pack.path.resolve() != path.resolve():
        raise DomainError(f"{path} holds no pack.json")
    index = load_lexicon_index(pack)
    report = {"entity_types": len(pack.entity_types), "relations": len(pack.relations),
              "lexicon_entries": len(index.entries), "lexicon_phrases": len(index.phrases)}
    if (path / KNOWLEDGE_FILE).is_file():
        from kgmm.domains.knowledge import load_knowledge

        knowledge = load_knowledge(path / KNOWLEDGE_FILE)
        report["knowledge_labels"] = len(knowledge.edges)
        report["knowledge_edges"] = sum(len(edges) for edges in knowledge.edges.values())
    return report


__all__ = ["check_domain", "init_domain"]
