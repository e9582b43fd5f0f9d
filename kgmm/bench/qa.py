"""``kgmm bench qa``: latency of ``kgmm ask`` on a warm model and the rate of batched evaluation."""

from __future__ import annotations

import time
from pathlib import Path

from kgmm.errors import ValidationError
from kgmm.sources.questions import read_questions
from kgmm.tasks.qa import QAModel, evaluate_qa, kb_graph
from kgmm.utils import percentile


def bench_qa(model_dir: str | Path, kb: str | Path, questions: str | Path, *, count: int = 300) -> dict:
    """Time ``ask`` on a warm model, one question at a time, and batched evaluation.

    The model and graph are loaded and one question asked before timing (a warm model, as a served one is).
    ``count`` questions of the file are then asked one by one through :meth:`QAModel.ask` (linking, encoding,
    reasoning, evidence paths for the top 5); the whole file is then evaluated batched.

    Returns:
        dict with ``load_s``, ``ask_p50_ms``, ``ask_p95_ms``, ``ask_p99_ms``, ``asked``, ``batched_questions_per_s``
        and the batched evaluation's scores.
    """
    import statistics

    import torch

    if count < 1:
        raise ValidationError(f"count must be >= 1, got {count!r}")
    started = time.perf_counter()
    model = QAModel(model_dir)
    graph = kb_graph(kb, model.relations, stop_words=model.template_words)
    read = read_questions(questions)
    model.ask(read[0].text, graph)  # warm: first-call allocations, the sparse matrix
    load_s = time.perf_counter() - started
    threads = torch.get_num_threads()
    latencies = []
    for question in read[:count]:
        began = time.perf_counter()
        model.ask(question.text, graph)
        latencies.append((time.perf_counter() - began) * 1000)

    batched = evaluate_qa(model_dir, kb, questions, qa_model=model, graph=graph)
    return {
        "model": str(model_dir), "kb": str(kb), "questions_file": str(questions), "threads": threads,
        "load_s": round(load_s, 2), "asked": len(latencies),
        **{f"ask_p{round(q * 100)}_ms": round(percentile(latencies, q), 2) for q in (0.50, 0.95, 0.99)},
        "ask_mean_ms": round(statistics.fmean(latencies), 2),
        "batched_questions_per_s": batched["questions_per_s"], "batched_questions": batched["questions"],
        "hits1": batched["hits1"], "reachable_hits1": batched["reachable_hits1"],
    }
