"""Node features: the text encoder's embedding of each entity's name and type ("Metformin (Drug)").

Embeddings are cached on disk, one folder per encoder fingerprint, keyed by entity id with a hash of the
text each row was computed from: a later call encodes only entities that are new or whose text changed
(renamed, retyped), and does not even load the model when nothing is missing.

By default the cache lives in kgmm's cache folder (``$KGMM_CACHE_DIR`` or ``~/.cache/kgmm``) under
``features/``; rows are keyed by entity id *and* text hash, so graphs sharing the folder never read each
other's stale rows. Cache layout (``cache_dir/<encoder fingerprint>/``): ``features.pt`` (a ``[rows, dim]`` tensor, loadable
with ``weights_only=True``) and ``index.json`` (entity id -> [row, text hash]).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kgmm.errors import ValidationError

if TYPE_CHECKING:
    import torch
    from torch import Tensor
    from torch_geometric.data import Data

FORMAT = "kgmm.feature-cache/1"
FEATURES_FILE = "features.pt"
INDEX_FILE = "index.json"
DEFAULT_TEMPLATE = "{name} ({type})"


class Encoder(Protocol):
    """What :func:`node_features` needs of an encoder (:class:`kgmm.nn.text.TextEncoder` is one)."""

    dim: int
    fingerprint: str

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> Tensor: ...


def entity_texts(data: Data, *, template: str = DEFAULT_TEMPLATE) -> list[str]:
    """Return the text each node is encoded from (``template`` filled with its ``name`` and ``type``).

    A node the graph does not have (kept only by a given vocabulary) gets an empty string.
    """
    type_names = data.entity_type_vocab.keys
    texts = []
    for name, type_index in zip(data.entity_names, data.node_type.tolist(), strict=True):
        texts.append(template.format(name=name, type=type_names[type_index]) if type_index >= 0 else "")
    return texts


def text_hash(text: str) -> str:
    """A short digest of a node's text, stored beside its cached row."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class FeatureCache:
    """Cached embeddings of one encoder: entity id -> (row, text hash), rows in one tensor.

    Args:
        directory (str or Path): the folder of this encoder's cache (created on save).
        dim (int): embedding width.
        dtype (torch.dtype, optional): storage dtype (default float32; float16 halves the file).
    """

    def __init__(self, directory: str | Path, dim: int, *, dtype: torch.dtype | None = None) -> None:
        import torch

        self.directory = Path(directory)
        self.dim = dim
        self.dtype = dtype or torch.float32
        self.rows: dict[str, tuple[int, str]] = {}
        self.features = torch.empty(0, dim, dtype=self.dtype)
        self._load()

    def _load(self) -> None:
        import torch

        index_path = self.directory / INDEX_FILE
        if not index_path.is_file():
            return
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            features = torch.load(self.directory / FEATURES_FILE, weights_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise ValidationError(f"the feature cache in {self.directory} cannot be read ({e}); delete the "
                                  "folder to rebuild it") from e
        if index.get("format") != FORMAT or index.get("dim") != self.dim or features.shape[1:] != (self.dim,):
            raise ValidationError(f"the feature cache in {self.directory} does not match this encoder "
                                  f"(expected {FORMAT!r} with dim {self.dim}); delete the folder to rebuild it")
        self.rows = {key: (int(row), digest) for key, (row, digest) in index["rows"].items()}
        self.features = features.to(self.dtype)

    def missing(self, keys: Sequence[str], hashes: Sequence[str]) -> list[int]:
        """Return the positions of the keys that have no row, or a row from another text."""
        rows = self.rows
        return [i for i, (key, digest) in enumerate(zip(keys, hashes, strict=True))
                if (found := rows.get(key)) is None or found[1] != digest]

    def put(self, keys: Sequence[str], hashes: Sequence[str], values: Tensor) -> None:
        """Store ``values`` (``[len(keys), dim]``) for ``keys``, overwriting their old rows."""
        import torch

        values = values.to(self.dtype)
        targets = []
        appended = 0
        for key, digest in zip(keys, hashes, strict=True):
            found = self.rows.get(key)
            if found is None:
                row = self.features.size(0) + appended
                appended += 1
            else:
                row = found[0]
            self.rows[key] = (row, digest)
            targets.append(row)
        if appended:
            self.features = torch.cat([self.features, torch.zeros(appended, self.dim, dtype=self.dtype)])
        if targets:
            self.features[torch.tensor(targets, dtype=torch.long)] = values

    def get(self, keys: Sequence[str]) -> Tensor:
        """Return the rows of ``keys`` (each must be cached)."""
        import torch

        return self.features[torch.tensor([self.rows[key][0] for key in keys], dtype=torch.long)]

    def save(self) -> None:
        import torch

        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / (FEATURES_FILE + ".tmp")
        torch.save(self.features.contiguous(), temporary)
        temporary.replace(self.directory / FEATURES_FILE)
        index = {"format": FORMAT, "dim": self.dim, "dtype": str(self.dtype).removeprefix("torch."),
                 "rows": {key: [row, digest] for key, (row, digest) in self.rows.items()}}
        temporary = self.directory / (INDEX_FILE + ".tmp")
        temporary.write_text(json.dumps(index, ensure_ascii=False), encoding="utf-8")
        temporary.replace(self.directory / INDEX_FILE)  # written last: a cache is complete once this exists


def node_features(
    data: Data,
    encoder: Encoder,
    *,
    cache_dir: str | Path | None | bool = None,
    template: str = DEFAULT_TEMPLATE,
    batch_size: int | None = None,
    progress: bool = False,
    cache_dtype: torch.dtype | None = None,
) -> Tensor:
    """Return ``[num_nodes, dim]`` text embeddings of every node's name and type, cached on disk.

    Args:
        data (Data): a graph from :mod:`kgmm.graphdata.tensors` (``entity_vocab``, ``entity_names``,
            ``node_type``, ``entity_type_vocab``).
        encoder (Encoder): anything with ``encode``, ``dim`` and ``fingerprint``, e.g.
            ``kgmm.nn.text.TextEncoder()`` (the offline all-MiniLM-L6-v2), which loads its weights only when
            some node is not cached yet.
        cache_dir (str, Path or False, optional): the cache folder (one subfolder per encoder); default
            ``kgmm.utils.cache_dir() / "features"``; False caches nothing.
        template (str, optional): the text of a node, from ``{name}`` and ``{type}`` (default "{name} ({type})").
        batch_size (int, optional): texts per forward pass (default: the encoder's).
        progress (bool, optional): show progress while encoding (default False).
        cache_dtype (torch.dtype, optional): how the cache stores rows (default float32).

    Shapes:
        returns ``[num_nodes, dim]`` float32; nodes the graph does not have are zero rows.
    """
    import torch

    texts = entity_texts(data, template=template)
    keys = data.entity_vocab.keys
    present = [i for i, text in enumerate(texts) if text]
    rows = text_features([keys[i] for i in present], [texts[i] for i in present], encoder, cache_dir=cache_dir,
                         batch_size=batch_size, progress=progress, cache_dtype=cache_dtype)
    out = torch.zeros(int(data.num_nodes), encoder.dim)
    if present:
        out[torch.tensor(present, dtype=torch.long)] = rows
    return out


def text_features(
    keys: Sequence[str],
    texts: Sequence[str],
    encoder: Encoder,
    *,
    cache_dir: str | Path | None | bool = None,
    batch_size: int | None = None,
    progress: bool = False,
    cache_dtype: torch.dtype | None = None,
) -> Tensor:
    """Return ``[len(texts), dim]`` embeddings of ``texts``, cached on disk under ``keys`` (entity or source ids).

    A cached row is reused only while its key's text is unchanged (rows store a hash of the text); only the
    missing texts reach ``encoder.encode``.

    Args:
        keys (list of str): one unique id per text.
        texts (list of str): the texts.
        encoder, cache_dir, batch_size, progress, cache_dtype: as for :func:`node_features`.
    """
    import torch

    if len(keys) != len(texts):
        raise ValidationError(f"expected one key per text, got {len(keys)} keys and {len(texts)} texts")
    if not all(hasattr(encoder, name) for name in ("encode", "dim", "fingerprint")):
        raise ValidationError(f"expected an encoder with encode, dim and fingerprint (e.g. "
                              f"kgmm.nn.text.TextEncoder()), got {type(encoder).__name__}")
    hashes = [text_hash(text) for text in texts]
    cache = _open_cache(cache_dir, encoder, cache_dtype)
    missing = cache.missing(keys, hashes) if cache is not None else list(range(len(texts)))
    computed = _encode_missing(encoder, [texts[i] for i in missing], batch_size, progress) if missing else None
    if cache is None:
        return computed.float() if computed is not None else torch.empty(0, encoder.dim)
    if computed is not None:
        cache.put([keys[i] for i in missing], [hashes[i] for i in missing], computed)
        cache.save()
    return cache.get(list(keys)).float() if len(keys) else torch.empty(0, encoder.dim)


def cache_folder(cache_dir: str | Path | None | bool, name: str) -> Path | None:
    """Resolve a ``cache_dir`` argument: None or True is kgmm's cache folder's ``name`` subfolder
    (``kgmm.utils.cache_dir() / name``), False caches nothing (None), a path is itself."""
    if cache_dir is False:
        return None
    if cache_dir is None or cache_dir is True:
        from kgmm.utils import cache_dir as kgmm_cache_dir

        return kgmm_cache_dir() / name
    return Path(cache_dir)


def _open_cache(cache_dir: str | Path | None | bool, encoder: Encoder,
                cache_dtype: torch.dtype | None) -> FeatureCache | None:
    """The encoder's cache under ``cache_dir`` (see :func:`cache_folder`; None when nothing is cached)."""
    folder = cache_folder(cache_dir, "features")
    return FeatureCache(folder / encoder.fingerprint, encoder.dim, dtype=cache_dtype) if folder is not None else None


def _encode_missing(encoder: Encoder, texts: list[str], batch_size: int | None, progress: bool) -> Tensor:
    computed = encoder.encode(texts, batch_size=batch_size, progress=progress)
    if computed.shape != (len(texts), encoder.dim):
        raise ValidationError(f"the encoder returned shape {list(computed.shape)} for {len(texts)} texts; "
                              f"expected [{len(texts)}, {encoder.dim}]")
    return computed
