"""Diagnose one case given as a user gives it: free text, finding names or codes, an image, age and sex.

The CLI's ``kgmm diagnose``, notebooks, and the HTTP and MCP services call :func:`diagnose_case`; it resolves the
findings against the model, builds the case and ranks diagnoses with their graph evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kgmm.errors import ValidationError


def diagnose_case(
    model,
    *,
    text: str = "",
    findings: Sequence[str] = (),
    absent: Sequence[str] = (),
    image: str | Path | None = None,
    age: float | None = None,
    sex: str | None = None,
    top_k: int = 5,
    rank_anyway: bool = False,
) -> dict:
    """Rank diagnoses for one case, each with the graph evidence for and against it.

    Args:
        model (DiagnosisModel): from :func:`kgmm.tasks.diagnosis.open_diagnosis_model`.
        text (str, optional): complaint, history, caption (negated findings count as absent).
        findings (list of str, optional): findings present: ids, codes (``E_53``) or names.
        absent (list of str, optional): findings known to be absent.
        image (str or Path, optional): an image of the case (for models trained with images).
        age (float, optional), sex (str, optional): attributes, for models trained with them.
        top_k (int, optional): diagnoses to return (default 5).
        rank_anyway (bool, optional): rank even when nothing in the case is known to the model.

    Raises:
        ValidationError: the image is missing, or the case is empty.
    """
    from kgmm.sources.cases import MAX_TEXT_CHARS, Case

    if image is not None and not Path(image).is_file():
        raise ValidationError(f"no image at {image}; check the path")
    present = model.resolve_findings(list(findings))
    missing = model.resolve_findings(list(absent))
    if not (text.strip() or present or missing or image):
        raise ValidationError("nothing to diagnose: give --text, --findings, --absent or --image")
    attributes = {key: value for key, value in (("age", age), ("sex", sex)) if value is not None}
    case = Case("cli", None, present, missing, " ".join(text.split())[:MAX_TEXT_CHARS],
                str(image) if image else None, attributes)
    return model.diagnose(case, top_k=top_k, rank_anyway=rank_anyway)
