"""kgmm: knowledge-graph-augmented multimodal reasoning.

Importing the package is cheap: torch, spaCy and the stores load inside the functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
