"""A BERT encoder for inference, read straight from a transformers folder (``config.json``, ``model.safetensors``,
``tokenizer.json``) with ``safetensors`` and ``tokenizers``.

Importing transformers' BERT costs ~4 s on these machines (its modelling utilities pull in torch.distributed,
dynamo, the generation code and more), several times the encoding of a question; this module gives the same
last hidden states (checked against transformers in the tests, to 1e-5) for BERT-family folders such as the
packaged all-MiniLM-L6-v2, so a cold ``kgmm ask`` or ``kgmm diagnose`` starts in a second or two. Other
architectures, and folders without those files, go through transformers (:class:`kgmm.nn.text.TextEncoder`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


@dataclass(frozen=True)
class BertConfig:
    """The fields of a transformers ``config.json`` that a BERT encoder needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def read(cls, path: Path) -> BertConfig:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})


def supports(path: Path) -> bool:
    """Whether the folder holds a BERT model (absolute positions, GELU) this module can run, with its files."""
    if not all((path / name).is_file() for name in REQUIRED_FILES):
        return False
    try:
        raw = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (raw.get("model_type") == "bert" and raw.get("hidden_act", "gelu") == "gelu"
            and raw.get("position_embedding_type", "absolute") == "absolute")


class _Layer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        hidden, eps = config.hidden_size, config.layer_norm_eps
        self.heads = config.num_attention_heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.attention_out, self.attention_norm = nn.Linear(hidden, hidden), nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, config.intermediate_size)
        self.out, self.out_norm = nn.Linear(config.intermediate_size, hidden), nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        batch, length, hidden = x.shape
        split = [t.view(batch, length, self.heads, hidden // self.heads).transpose(1, 2)
                 for t in (self.query(x), self.key(x), self.value(x))]
        attended = F.scaled_dot_product_attention(*split, attn_mask=mask, scale=1 / math.sqrt(hidden // self.heads))
        attended = attended.transpose(1, 2).reshape(batch, length, hidden)
        x = self.attention_norm(x + self.attention_out(attended))
        return self.out_norm(x + self.out(F.gelu(self.intermediate(x))))


class BertEncoder(nn.Module):
    """BERT's embeddings and encoder layers (no pooler), for inference.

    Args:
        config (BertConfig): the model's sizes.

    Shapes:
        input_ids, attention_mask ``[B, T]`` -> last hidden states ``[B, T, hidden_size]``.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.words = nn.Embedding(config.vocab_size, hidden, padding_idx=config.pad_token_id)
        self.positions = nn.Embedding(config.max_position_embeddings, hidden)
        self.token_types = nn.Embedding(config.type_vocab_size, hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))

    def __repr__(self) -> str:
        c = self.config
        return f"{type(self).__name__}(layers={c.num_hidden_layers}, hidden={c.hidden_size}, heads={c.num_attention_heads})"

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = self.words(input_ids) + self.positions(positions)[None] + self.token_types.weight[0]
        x = self.embedding_norm(x)
        mask = attention_mask.bool()[:, None, None, :]  # keys a token may attend to
        for layer in self.layers:
            x = layer(x, mask)
        return x

    @classmethod
    def load(cls, path: str | Path) -> BertEncoder:
        """Build the encoder of a transformers BERT folder and load its ``model.safetensors``."""
        from safetensors.torch import load_file

        path = Path(path)
        model = cls(BertConfig.read(path))
        weights = load_file(str(path / "model.safetensors"))
        prefix = "bert." if any(key.startswith("bert.") for key in weights) else ""
        model.load_state_dict(_renamed(weights, prefix, model.config.num_hidden_layers))
        return model.eval()


def _renamed(weights: dict[str, Tensor], prefix: str, layers: int) -> dict[str, Tensor]:
    """transformers' parameter names -> this module's."""
    names = {"words.weight": "embeddings.word_embeddings.weight",
             "positions.weight": "embeddings.position_embeddings.weight",
             "token_types.weight": "embeddings.token_type_embeddings.weight",
             "embedding_norm.weight": "embeddings.LayerNorm.weight", "embedding_norm.bias": "embeddings.LayerNorm.bias"}
    parts = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attention_out": "attention.output.dense", "attention_norm": "attention.output.LayerNorm",
             "intermediate": "intermediate.dense", "out": "output.dense", "out_norm": "output.LayerNorm"}
    for index in range(layers):
        for ours, theirs in parts.items():
            for kind in ("weight", "bias"):
                names[f"layers.{index}.{ours}.{kind}"] = f"encoder.layer.{index}.{theirs}.{kind}"
    return {ours: weights[prefix + theirs] for ours, theirs in names.items()}


class BertTokenizer:
    """The folder's ``tokenizer.json`` (the fast tokenizer transformers itself loads), batched, padded and cut."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def __call__(self, texts: list[str], *, max_length: int) -> tuple[Tensor, Tensor]:
        """Return ``input_ids`` and ``attention_mask`` ``[B, T]`` (T: the longest text, at most ``max_length``)."""
        self.tokenizer.enable_truncation(max_length)
        encodings = self.tokenizer.encode_batch(texts)
        width = max((len(e.ids) for e in encodings), default=1)
        ids = torch.zeros(len(encodings), width, dtype=torch.long)
        mask = torch.zeros(len(encodings), width, dtype=torch.long)
        for row, encoding in enumerate(encodings):
            ids[row, :len(encoding.ids)] = torch.tensor(encoding.ids)
            mask[row, :len(encoding.ids)] = 1
        return ids, mask
