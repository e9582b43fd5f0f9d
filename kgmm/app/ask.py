"""Ask any graph a question, with no labelled questions: the store's own QA model, trained from its graph.

``kgmm ask "..." --store S`` without ``--model`` calls :func:`ask`. The first time (and whenever the store's relation
types have changed since) it trains a model on questions synthesized from the store's graph
(:mod:`kgmm.tasks.qa_synthesis`) and keeps it with the store (:meth:`GraphStore.artifact_dir`: an embedded store's
own folder, a server's folder in kgmm's cache keyed by its URI and database); later questions load it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from kgmm.store.base import GraphStore
from kgmm.tasks.qa_synthesis import DEFAULT_QUESTIONS

MODEL_NAME = "qa-model"
MIN_QUESTIONS = 800
QUESTIONS_PER_FACT = 20  # a small graph gets fewer synthesized questions than the default, so its first ask is quick
AUTO_EPOCHS = 8


def store_model_dir(store: GraphStore, *, notice: Callable[[str], None] | None = None,
                    progress: bool = False) -> Path:
    """Return the folder of ``store``'s own zero-label QA model, training it first when there is none or the
    store's relation types changed since it was trained (``notice`` is told what is done, and where).

    Raises:
        SourceError: the store holds no relations to ask about.
    """
    from kgmm.errors import SourceError

    directory = store.artifact_dir(MODEL_NAME)
    stats = store.stats()
    relations = sorted(stats.relations_by_type)
    if not relations:
        raise SourceError("holds no relations, so there is nothing to ask; ingest documents or a KB with facts first",
                          path=store.uri)
    if _trained_for(directory, relations):
        return directory
    if notice is not None:
        why = "its relation types changed" if (directory / "config.json").is_file() else "it has none yet"
        notice(f"training a QA model from the graph of {store.uri} ({why}; no labelled questions needed), "
               f"kept in {directory}")
    _train_into(store, directory, count=max(MIN_QUESTIONS, min(DEFAULT_QUESTIONS, QUESTIONS_PER_FACT * stats.relations)),
                progress=progress)
    return directory


def _trained_for(directory: Path, relations: list[str]) -> bool:
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return sorted(config.get("relations", [])) == relations


def _train_into(store: GraphStore, directory: Path, *, count: int, progress: bool) -> None:
    """Train into a fresh folder beside ``directory`` and move it in place, so a failed or interrupted training
    never leaves a half-written model where the next ask would load it."""
    from kgmm.errors import StoreError
    from kgmm.tasks.qa import train_qa

    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".training-", dir=directory.parent))
    except OSError as e:
        raise StoreError(f"cannot keep the store's QA model in {directory.parent} ({e.strerror or e}); train one "
                         "elsewhere with `kgmm train qa --store S --out DIR` and pass --model DIR") from e
    try:
        train_qa(None, [], staging / "model", store=store, synthetic_questions=count, epochs=AUTO_EPOCHS,
                 progress=progress)
        if directory.exists():
            shutil.rmtree(directory)
        (staging / "model").replace(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ask(store: GraphStore, question: str, *, model: str | Path | None = None, top_k: int = 5,
        image: str | Path | None = None, notice: Callable[[str], None] | None = None,
        progress: bool = False) -> dict:
    """Answer ``question`` from ``store``'s graph, with the chain of facts and the sources behind each answer.

    Args:
        store (GraphStore): an open store.
        question (str): the question; an entity in ``[brackets]`` is taken as named.
        model (str or Path, optional): a QA model from ``kgmm train qa``; default the store's own
            (:func:`store_model_dir`, trained on first use).
        top_k (int, optional): answers to return (default 5).
        image (str or Path, optional): a photo the question is about.
        notice (callable, optional): told when a model is trained first, and where it is kept.
        progress (bool, optional): show the training's progress.

    Returns:
        dict: as :meth:`kgmm.tasks.qa.QAModel.ask`, plus ``model`` (the folder of the model used).
    """
    from kgmm.tasks.qa import QAModel, open_qa_graph

    directory = Path(model) if model is not None else store_model_dir(store, notice=notice, progress=progress)
    qa_model = QAModel(directory)
    result = qa_model.ask(question, open_qa_graph(qa_model, store=store), top_k=top_k, image=image)
    return {**result, "model": str(directory)}
