"""``kgmm bench qa-curve``: how a QA model gains from labelled questions on top of the ones made from the graph.

Each question file (one per hop count, say) is split once: a share is held out as its test set, the rest is the
pool labelled questions are drawn from. For each size (0, 10, 100, all: labelled questions per file) one model is
trained on the questions synthesized from the graph plus that many of each pool, and scored on every test set.
Size 0 is the zero-label model a user without questions gets.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from kgmm.errors import ValidationError
from kgmm.sources.questions import read_questions, write_questions
from kgmm.tasks.qa_synthesis import DEFAULT_QUESTIONS

DEFAULT_SIZES: tuple[int | None, ...] = (0, 10, 100, None)


def qa_curve(kb: str | Path, questions: Sequence[str | Path], out: str | Path, *,
             sizes: Sequence[int | None] = DEFAULT_SIZES, test_share: float = 0.5, seed: int = 0,
             synthetic_questions: int = DEFAULT_QUESTIONS, epochs: int = 6, steps: int = 3, progress: bool = False) -> dict:
    """Train one model per size and score each on every file's held-out questions.

    Args:
        kb (str or Path): the KB the questions are about.
        questions (list of paths): labelled question files (e.g. one per hop count).
        out (str or Path): folder for the splits, the models, ``qa_curve.json`` and ``qa_curve.png``.
        sizes (list of int or None, optional): labelled questions per file; None is all of its pool.
        test_share (float, optional): share of each file held out as its test set (default 0.5).
        seed (int, optional): seeds the splits and the training (default 0).
        synthetic_questions, epochs, steps: as for :func:`kgmm.tasks.qa.train_qa`.
        progress (bool, optional): print the training's progress.

    Returns:
        dict: ``rows`` (one per size and file: ``labelled``, ``file``, ``reachable_hits1``, ``hits1``,
        ``questions``), the ``plot`` path and the settings.
    """
    from kgmm.tasks.qa import evaluate_qa, train_qa

    if not questions:
        raise ValidationError("expected at least one --questions file")
    if not 0.0 < test_share < 1.0:
        raise ValidationError(f"--test-share must be between 0 and 1, got {test_share!r}")
    out = Path(out)
    pools, tests = _split_files(questions, out, test_share, seed)
    rows = []
    for size in sizes:
        label = "all" if size is None else str(size)
        train = [write_questions(pool if size is None else pool[:size], out / f"train-{label}" / name)
                 for name, pool in pools.items()] if size != 0 else []
        model_dir = out / f"model-{label}"
        train_qa(kb, train, model_dir, synthesize=True, synthetic_questions=synthetic_questions, epochs=epochs,
                 steps=steps, seed=seed, progress=progress)
        for name, test in tests.items():
            scores = evaluate_qa(model_dir, kb, test)
            rows.append({"labelled": label, "file": name, "questions": scores["questions"],
                         "reachable_hits1": scores["reachable_hits1"], "hits1": scores["hits1"]})
    result = {"kb": str(kb), "sizes": [("all" if s is None else s) for s in sizes], "test_share": test_share,
              "synthetic_questions": synthetic_questions, "epochs": epochs, "seed": seed, "rows": rows,
              "plot": str(plot_curve(rows, out / "qa_curve.png"))}
    (out / "qa_curve.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _split_files(questions: Sequence[str | Path], out: Path, test_share: float,
                 seed: int) -> tuple[dict[str, list], dict[str, Path]]:
    """Each file's pool of labelled questions (shuffled) and the path of its held-out test file."""
    pools: dict[str, list] = {}
    tests: dict[str, Path] = {}
    for path in questions:
        name = Path(path).name
        if name in pools:
            raise ValidationError(f"two --questions files are named {name}; rename one")
        read = read_questions(path)
        random.Random(f"{seed}:{name}").shuffle(read)
        cut = max(1, round(len(read) * test_share))
        tests[name] = write_questions(read[:cut], out / "test" / name)
        pools[name] = read[cut:]
    return pools, tests


def plot_curve(rows: Sequence[dict], out_png: str | Path) -> Path:
    """Reachable Hits@1 against labelled questions per file, one line per file."""
    from kgmm.bench import plot_lines

    labels = list(dict.fromkeys(row["labelled"] for row in rows))
    lines = {}
    for name in dict.fromkeys(row["file"] for row in rows):
        line = [row for row in rows if row["file"] == name]
        lines[name] = ([labels.index(row["labelled"]) for row in line], [row["reachable_hits1"] for row in line], "-")
    return plot_lines(lines, labels, out_png, xlabel="labelled questions per file (on top of the synthesized ones)",
                      ylabel="held-out reachable Hits@1")


__all__ = ["DEFAULT_SIZES", "plot_curve", "qa_curve"]
