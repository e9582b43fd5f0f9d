"""The lexicon's phrase table is cached on disk, so a new process skips tokenising every phrase; spaCy is
imported without torch. Both are what make a one-note ingest start in a few seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kgmm.schema import Source

NOTE = "Metformin is used to treat diabetes. She reports myalgia and fatigue; COPD was ruled out."


def _extractor(domain: str):
    from kgmm.extract.pipeline import Extractor

    return Extractor(domain=domain)


def _facts(extractor) -> tuple[set, set]:
    extraction = next(extractor.extract([Source.document(NOTE, "t")]))
    names = {e.id: e.name for e in extraction.entities}
    return ({(e.name, e.type) for e in extraction.entities},
            {(names[r.head], r.type, names[r.tail]) for r in extraction.relations})


def test_a_second_pipeline_reads_the_cached_phrase_table_and_extracts_the_same(tmp_path, monkeypatch):
    from kgmm.extract.ruler import PhraseTable

    monkeypatch.setenv("KGMM_CACHE_DIR", str(tmp_path))
    first = _facts(_extractor("medical"))
    cached = list((tmp_path / "lexicons").glob("phrases-*.json"))
    assert len(cached) == 1
    assert len(json.loads(cached[0].read_text(encoding="utf-8"))["lower"]) > 10_000

    def no_build(*args, **kwargs):
        raise AssertionError("the phrase table was tokenised again instead of read from the cache")

    monkeypatch.setattr(PhraseTable, "build", classmethod(no_build))
    assert _facts(_extractor("medical")) == first
    assert ("Metformin", "TREATS", "Diabetes") in first[1]


def test_a_damaged_phrase_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("KGMM_CACHE_DIR", str(tmp_path))
    expected = _facts(_extractor("medical"))
    (cached,) = (tmp_path / "lexicons").glob("phrases-*.json")
    cached.write_text('{"lower": [[1, 2', encoding="utf-8")
    assert _facts(_extractor("medical")) == expected
    assert json.loads(cached.read_text(encoding="utf-8"))["types"]


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        # a one-note ingest parses with spaCy: thinc must not drag torch in (1.5 s of every start)
        ("from kgmm.extract.pipeline import Extractor; from kgmm.schema import Source\n"
         "next(Extractor(domain='general').extract([Source.document('Aspirin treats headache.', 't')]))",
         "torch"),
        # a cold ask reads the KB into tensors without PyG
        ("from kgmm.tasks.qa import kb_graph\nkb_graph(KB)", "torch_geometric"),
    ],
    ids=["extraction-without-torch", "qa-graph-without-pyg"],
)
def test_cold_paths_leave_heavy_modules_unimported(tmp_path, code, absent):
    kb = tmp_path / "kb.txt"
    kb.write_text("Film A|directed_by|Person B\nFilm A|has_genre|Drama\n", encoding="utf-8")
    script = f"import sys\nKB = {str(kb)!r}\n{code}\nprint({absent!r} in sys.modules)"
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip().splitlines()[-1] == "False"
