"""Stable vocabularies: entity id <-> index and relation type <-> index, saved beside a model.

An index, once given, never changes: new entities and relation types are appended, so a model trained
today still lines up with the graph after new documents are ingested. A vocabulary is saved as JSON
(a list of keys in index order) and checked against a model's on load.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from kgmm.errors import ValidationError

FORMAT = "kgmm.vocabulary/1"


class Vocabulary:
    """An append-only mapping between string keys (entity ids, relation types) and indices 0..n-1.

    Args:
        keys (iterable of str, optional): initial keys, in index order (duplicates keep their first index).
        name (str, optional): what the keys are ("entities", "relations"), used in messages and files.
    """

    def __init__(self, keys: Iterable[str] = (), *, name: str = "keys") -> None:
        self.name = name
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self.extend(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._keys == other._keys

    def __repr__(self) -> str:
        return f"Vocabulary({self.name}, {len(self)} keys)"

    @property
    def keys(self) -> list[str]:
        """The keys in index order (a copy)."""
        return list(self._keys)

    def index(self, key: str) -> int:
        """Return the index of ``key``.

        Raises:
            ValidationError: when the key is unknown, naming it and the vocabulary.
        """
        try:
            return self._index[key]
        except KeyError:
            raise ValidationError(f"unknown {self.name[:-1] if self.name.endswith('s') else self.name} {key!r} "
                                  f"(not among the {len(self)} {self.name} of this vocabulary)") from None

    def get(self, key: str, default: int | None = None) -> int | None:
        return self._index.get(key, default)

    def indices(self, keys: Iterable[str]) -> list[int]:
        """Return the index of every key (each must be known)."""
        index = self._index
        try:
            return [index[key] for key in keys]
        except KeyError:
            missing = next(key for key in keys if key not in index)
            return [self.index(missing)]  # raises with a clear message

    def key(self, index: int) -> str:
        return self._keys[index]

    def index_map(self) -> Mapping[str, int]:
        """A read-only live view of key -> index, for fast bulk lookups (``index_map()[key]``)."""
        return MappingProxyType(self._index)

    def add(self, key: str) -> int:
        """Return the index of ``key``, appending it when new."""
        found = self._index.get(key)
        if found is None:
            if not isinstance(key, str) or not key:
                raise ValidationError(f"vocabulary keys must be non-empty strings, got {key!r}")
            found = self._index[key] = len(self._keys)
            self._keys.append(key)
        return found

    def extend(self, keys: Iterable[str]) -> list[str]:
        """Append the keys not yet known, in order; return the new ones."""
        new = []
        for key in keys:
            if key not in self._index:
                self.add(key)
                new.append(key)
        return new

    def is_prefix_of(self, other: Vocabulary) -> bool:
        """Whether ``other`` keeps every index of this vocabulary (it may have more keys after them)."""
        return len(other) >= len(self) and other._keys[: len(self)] == self._keys

    def check_compatible(self, other: Vocabulary, *, what: str = "the model") -> None:
        """Raise unless ``other`` (e.g. today's graph) keeps every index of this one (e.g. a model's).

        Raises:
            ValidationError: naming the first key whose index differs and how to fix it.
        """
        if self.is_prefix_of(other):
            return
        for position, key in enumerate(self._keys):
            if position >= len(other) or other._keys[position] != key:
                found = other._keys[position] if position < len(other) else "nothing"
                raise ValidationError(
                    f"{what}'s {self.name} do not line up with this graph's: index {position} is {key!r} there but "
                    f"{found!r} here ({len(self)} vs {len(other)} {self.name}); build the graph's tensors with "
                    f"{what}'s vocabulary (it appends new {self.name}) or retrain"
                )

    def to_dict(self) -> dict:
        return {"format": FORMAT, "name": self.name, "keys": list(self._keys)}

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "vocabulary") -> Vocabulary:
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("keys"), list):
            raise ValidationError(f"{source} is not a kgmm vocabulary (expected format {FORMAT!r})")
        return cls(data["keys"], name=str(data.get("name") or "keys"))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        temporary.replace(path)  # never a half-written vocabulary
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValidationError(f"no vocabulary at {path}") from None
        except (OSError, ValueError) as e:
            raise ValidationError(f"could not read the vocabulary {path}: {e}") from e
        return cls.from_dict(data, source=str(path))


def union(vocabulary: Vocabulary | None, keys: Sequence[str], *, name: str) -> Vocabulary:
    """Return ``vocabulary`` extended with ``keys`` (a new one from ``keys`` when None)."""
    result = Vocabulary(vocabulary.keys if vocabulary is not None else (), name=name)
    result.extend(keys)
    return result
