"""Read question-answer files in MetaQA's format: ``question with [topic entity]<TAB>answer1|answer2``.

One question a line. Square brackets mark the topic entities (one or more; the text between them is the
entity's name as the knowledge base spells it, up to case and punctuation). The answers follow a TAB,
separated by ``|``. A line without a TAB is a question without answers (for ``kgmm ask``-style input).
Blank lines are skipped. Nothing here knows any relation name or question wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from kgmm.errors import SourceError

TOPIC = re.compile(r"\[([^\[\]]+)\]")
MAX_QUESTION_CHARS = 2_000  # a question longer than this is cut (a 10,000-word question is not a question)


@dataclass
class Question:
    """One question of a QA file.

    Args:
        text (str): the question as written (brackets kept).
        topics (list of str): the bracketed topic entity names, in order.
        answers (list of str): the answer names (empty when the line has none).
        line (int): 1-based line number in its file (0 when not read from a file).
    """

    text: str
    topics: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    line: int = 0


def parse_question(text: str) -> tuple[str, list[str]]:
    """Return ``(text, topics)``: the question (cut to ``MAX_QUESTION_CHARS``) and its bracketed topic names."""
    text = " ".join(text.split())[:MAX_QUESTION_CHARS]
    return text, [name.strip() for name in TOPIC.findall(text) if name.strip()]


def mask_topics(text: str, placeholder: str = "X") -> str:
    """Replace each bracketed topic entity by ``placeholder`` ("what did [Joel Zwick] direct" -> "what did X
    direct"), so the question encoder reads the question's wording, not the entity's name."""
    return TOPIC.sub(placeholder, text)


def read_questions(path: str | Path) -> list[Question]:
    """Read a QA file (see the module docstring).

    Raises:
        SourceError: when the file is missing, a directory, not UTF-8 text, or holds no question; the message
            names the file (and line) and the expected format.
    """
    path = Path(path)
    if path.is_dir():
        raise SourceError("is a directory, expected a questions file (question with [topic]<TAB>answer1|answer2 "
                          "per line)", path=str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise SourceError("no such questions file; check the path", path=str(path)) from e
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read the questions file ({e}); it must be UTF-8 text, one "
                          "'question with [topic]<TAB>answer1|answer2' per line", path=str(path)) from e
    questions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        question, _, answers = line.partition("\t")
        text, topics = parse_question(question)
        if not text:
            raise SourceError("empty question before the TAB; write 'question with [topic]<TAB>answer1|answer2'",
                              path=str(path), line=number)
        names = [name.strip() for name in answers.split("|") if name.strip()]
        questions.append(Question(text, topics, names, number))
    if not questions:
        raise SourceError("holds no question; write one 'question with [topic]<TAB>answer1|answer2' per line",
                          path=str(path))
    return questions


__all__ = ["MAX_QUESTION_CHARS", "Question", "mask_topics", "parse_question", "read_questions"]


def write_questions(questions: list[Question], path: str | Path) -> Path:
    """Write ``questions`` in the format :func:`read_questions` reads (folders created as needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{q.text}\t{'|'.join(q.answers)}\n" for q in questions), encoding="utf-8")
    return path
