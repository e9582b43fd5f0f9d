"""The text encoder: kgmm's own BERT forward (no transformers import) gives transformers' states."""

from __future__ import annotations

import subprocess
import sys

import pytest

TEXTS = ["what genre is The Red River", "Metformin is used to treat diabetes.", "x",
         "A 34-year-old woman presenting with fever, dry cough and myalgia for two days. " * 4, "Ünïcödé 漢字 😀"]


def test_bert_encoder_matches_transformers_states_and_sentence_embeddings(monkeypatch):
    from kgmm.nn.text import TextEncoder

    ours = TextEncoder()
    monkeypatch.setenv("KGMM_TEXT_BACKEND", "transformers")
    theirs = TextEncoder()
    assert ours.dim == theirs.dim == 384 and ours.fingerprint == theirs.fingerprint
    assert (ours.encode(TEXTS) - theirs.encode(TEXTS)).abs().max() < 1e-5
    (states, mask), (their_states, their_mask) = ours.encode_tokens(TEXTS), theirs.encode_tokens(TEXTS)
    assert states.shape == their_states.shape == (5, 64, 384) and bool((mask == their_mask).all())
    assert (states - their_states).abs().max() < 1e-4


def test_text_encoder_loads_without_importing_transformers():
    code = ("import sys; from kgmm.nn.text import TextEncoder; e = TextEncoder(); e.encode(['fever']); "
            "print('transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert result.stdout.strip() == "False"


def test_bert_support_is_checked_from_the_folder(tmp_path):
    from kgmm.nn import bert
    from kgmm.nn.text import default_text_encoder_path

    assert bert.supports(default_text_encoder_path())
    (tmp_path / "config.json").write_text('{"model_type": "roberta"}', encoding="utf-8")
    assert not bert.supports(tmp_path)


@pytest.mark.parametrize("missing", ["tokenizer.json", "model.safetensors"])
def test_bert_support_needs_its_files(tmp_path, missing):
    import shutil

    from kgmm.nn import bert
    from kgmm.nn.text import default_text_encoder_path

    for name in bert.REQUIRED_FILES:
        if name != missing:
            shutil.copy(default_text_encoder_path() / name, tmp_path / name)
    assert not bert.supports(tmp_path)
