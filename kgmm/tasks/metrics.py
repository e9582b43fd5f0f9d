"""Precision, recall and F1 from match counts, multiset matching of predicted against gold items, and macro-F1
of class predictions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["PRF", "macro_f1", "match_counts"]


@dataclass
class PRF:
    """Micro-averaged match counts; precision, recall and F1 are derived (0.0 when undefined).

    Args:
        tp (int): predicted items that match a gold item.
        fp (int): predicted items that match none.
        fn (int): gold items that no prediction matched.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: PRF) -> PRF:
        return PRF(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


def match_counts(gold: Iterable[Hashable], predicted: Iterable[Hashable]) -> PRF:
    """Count matches between two multisets: each gold item matches at most one equal prediction."""
    gold_counts, predicted_counts = Counter(gold), Counter(predicted)
    tp = sum((gold_counts & predicted_counts).values())
    return PRF(tp=tp, fp=sum(predicted_counts.values()) - tp, fn=sum(gold_counts.values()) - tp)


def macro_f1(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Unweighted mean F1 over every label in ``truth`` or ``predicted``.

    Args:
        truth (list): the gold label of each item (a label no model knows, such as None, still counts: its F1 is 0).
        predicted (list): the predicted label of each item, as long as ``truth``.

    Returns:
        float: the macro-F1, unrounded (0.0 when there is no item).
    """
    true_positive, false_positive, false_negative = Counter(), Counter(), Counter()
    for actual, guess in zip(truth, predicted, strict=True):
        if actual == guess:
            true_positive[actual] += 1
        else:
            false_positive[guess] += 1
            false_negative[actual] += 1
    labels = set(truth) | set(predicted)
    scores = [2 * true_positive[label] / (2 * true_positive[label] + false_positive[label] + false_negative[label])
              for label in labels]
    return sum(scores) / len(scores) if scores else 0.0
