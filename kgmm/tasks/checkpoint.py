"""Model directories: reading a checkpoint's ``config.json`` with one set of checks and messages."""

from __future__ import annotations

import json
from pathlib import Path

from kgmm.errors import SourceError

CONFIG_FILE = "config.json"


def read_model_config(model_dir: str | Path, *, kind: str, max_format: int, what: str, fix: str) -> dict:
    """Return the parsed ``config.json`` of a model directory, checked to be a ``kind`` model kgmm can read.

    Args:
        model_dir (str or Path): the model directory.
        kind (str): the ``kind`` the config must declare (``kgmm-kge-model``).
        max_format (int): the newest ``format_version`` this kgmm reads.
        what (str): the model, as messages name it ("a KGE model").
        fix (str): how to get a good one, appended to every message.

    Raises:
        SourceError: the directory has no config, the config is unreadable, of another kind or too new.
    """
    model_dir = Path(model_dir)
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise SourceError(f"not {what} directory (no {CONFIG_FILE}); {fix}", path=str(model_dir))
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"unreadable model config ({e}); {fix}", path=str(config_path)) from e
    if not isinstance(config, dict) or config.get("kind") != kind:
        found = config.get("kind", "unknown") if isinstance(config, dict) else "unknown"
        raise SourceError(f"holds a {found!r} model, not {what} ({kind}); {fix}", path=str(config_path))
    if int(config.get("format_version", 0)) > max_format:
        raise SourceError(f"written by a newer kgmm (format {config['format_version']}, this one reads up to "
                          f"{max_format}); upgrade kgmm", path=str(config_path))
    return config
