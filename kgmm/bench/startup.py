"""``kgmm bench startup`` and ``kgmm bench cold-start``: what a user waits for before the first answer."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from kgmm.errors import KgmmError


def bench_startup(repeats: int = 5) -> dict:
    """Median wall time of ``import kgmm`` and ``kgmm --help`` in fresh interpreters."""
    import statistics
    import sys

    def median_seconds(command: list[str]) -> float:
        return round(statistics.median(_wall_seconds(command, None) for _ in range(repeats)), 3)

    baseline = median_seconds([sys.executable, "-c", "pass"])
    return {
        "python_startup_s": baseline,
        "import_kgmm_s": median_seconds([sys.executable, "-c", "import kgmm"]),
        "kgmm_help_s": median_seconds([sys.executable, "-m", "kgmm", "--help"]),
        "repeats": repeats,
    }


COLD_NOTE = ("Patient is a 54-year-old man with fever, dry cough and myalgia for three days. History of "
             "hypertension and type 2 diabetes, treated with metformin. Influenza suspected; oseltamivir started.\n")
COLD_DIAGNOSIS_TEXT = "cough for a week, no fever"
COLD_QA_QUESTIONS = 200  # questions the throwaway QA model is trained on (untimed); the timed one is not among them


def bench_cold_start(data_dir: str | Path, *, repeats: int = 3) -> dict:
    """Wall time of three commands a user runs first, each in a fresh process as typed in a shell: a one-note
    ``kgmm ingest`` (medical pack) into a new store, a cold ``kgmm ask`` over MetaQA's KB and a cold
    ``kgmm diagnose --knowledge`` over DDXPlus's conditions. Each is timed ``repeats`` times with the cache
    kgmm keeps between runs (median reported) and once with an empty cache (``*_empty_cache_s``: what the very
    first run pays to build it). The QA model is a throwaway one trained here first, untimed.
    """
    import statistics
    import subprocess
    import sys

    data_dir = Path(data_dir)
    kb = data_dir / "metaqa" / "kb.txt"
    questions = data_dir / "metaqa" / "qa_dev_1hop.txt"
    knowledge = data_dir / "ddxplus" / "release_conditions.json"
    for needed in (kb, questions, knowledge):
        if not needed.is_file():
            raise KgmmError(f"{needed} is missing; pass --data with the shared data folder (MetaQA and DDXPlus)")
    work = Path(tempfile.mkdtemp(prefix="kgmm-bench-cold-"))
    kgmm = [sys.executable, "-m", "kgmm"]
    try:
        note = work / "note.txt"
        note.write_text(COLD_NOTE, encoding="utf-8")
        lines = questions.read_text(encoding="utf-8").splitlines()
        (work / "questions.txt").write_text("\n".join(lines[:COLD_QA_QUESTIONS]) + "\n", encoding="utf-8")
        subprocess.run(kgmm + ["train", "qa", "--kb", str(kb), "--train", str(work / "questions.txt"), "--out",
                               str(work / "qa"), "--epochs", "1", "--steps", "1", "--quiet"],
                       check=True, capture_output=True)
        question = lines[COLD_QA_QUESTIONS].split("\t")[0]
        commands = {
            "ingest": lambda run: kgmm + ["ingest", str(note), "--store", str(work / f"store-{run}"),
                                          "--domain", "medical", "--json"],
            "ask": lambda run: kgmm + ["ask", question, "--model", str(work / "qa"), "--kb", str(kb)],
            "diagnose": lambda run: kgmm + ["diagnose", "--knowledge", str(knowledge), "--text",
                                            COLD_DIAGNOSIS_TEXT],
        }
        report: dict = {"repeats": repeats, "question": question}
        for name, command in commands.items():
            empty_cache = dict(os.environ, KGMM_CACHE_DIR=str(work / f"cache-{name}"))
            report[f"{name}_empty_cache_s"] = round(_wall_seconds(command("empty"), empty_cache), 2)
            times = [_wall_seconds(command(run), None) for run in range(repeats)]
            report[f"{name}_s"] = round(statistics.median(times), 2)
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _wall_seconds(command: list[str], env: dict | None) -> float:
    """Seconds one command takes in a fresh process; KgmmError with its output when it fails."""
    import subprocess

    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, env=env)
    if finished.returncode != 0:
        raise KgmmError(f"{' '.join(command[2:4])} failed (rc {finished.returncode}): "
                        f"{(finished.stderr or finished.stdout).strip()[-500:]}")
    return time.perf_counter() - started
