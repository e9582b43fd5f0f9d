"""Errors raised by kgmm: one root, one subclass per layer.

Messages say what went wrong, where (file, line, URI), and how to fix it.
"""

from __future__ import annotations


class KgmmError(Exception):
    """Root of every error kgmm raises on purpose."""


class SourceError(KgmmError):
    """An input file or record could not be read."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class DomainError(KgmmError):
    """A domain pack is missing or malformed."""


class ExtractionError(KgmmError):
    """The spaCy pipeline could not be built or run."""


class StoreError(KgmmError):
    """A graph store could not be opened, written or queried."""


class WriteRefusedError(StoreError):
    """A query tried to write to a store it was allowed only to read (the database refused it)."""


class EntityNotFoundError(StoreError):
    """No stored entity matches a name (a search, neighbourhood or path asked about an unknown entity)."""


class ValidationError(KgmmError):
    """A value (label, relation type, parameter) failed validation before reaching a store."""


class MissingDependencyError(KgmmError):
    """A dependency is not installed: one of an extra (``extra`` names it) or of the base install (None)."""

    def __init__(self, package: str, extra: str | None = None) -> None:
        how = f'pip install "kgmm[{extra}]"' if extra else f"pip install {package} (kgmm depends on it)"
        super().__init__(f"{package} is not installed; install it with: {how}")
