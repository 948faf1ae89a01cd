"""A tokenizer read straight from ``tokenizer.json`` with the ``tokenizers`` library, without transformers.

Importing transformers costs about a second of every command that encodes (0.9 s here, measured with
``python -X importtime``), and a short command such as ``predict "one tweet"`` on the OpenVINO path
needs nothing else from it. For the tokenizer classes whose whole behaviour is their
``tokenizer.json`` (``models._PLAIN_TOKENIZERS``: BERT, DistilBERT, MPNet), ``FileTokenizer`` gives
the ids and padding ``PreTrainedTokenizerFast`` gives (tests/test_embed.py checks every GOP tweet and
hostile strings against AutoTokenizer). It offers only what ``embed`` calls: ``__call__`` for
input ids and ``pad`` to numpy arrays. Everything else (the torch path, the OpenVINO conversion,
fine-tuning) loads transformers' own tokenizer.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class FileTokenizer:
    """``tokenizers.Tokenizer`` from a folder's ``tokenizer.json``, with its padding token from the config files."""

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.folder = folder
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()
        self._truncate_at: int | None = None
        pad = _pad_token(folder)
        self.pad_token_id = self._tok.token_to_id(pad) if pad is not None else None
        if self.pad_token_id is None:
            raise ValueError(f"{folder}: no padding token id for {pad!r}")

    def __call__(self, texts: list[str], add_special_tokens: bool = True, truncation: bool = False,
                 max_length: int | None = None, return_attention_mask: bool = True) -> dict:
        limit = max_length if truncation else None
        if limit != self._truncate_at:
            if limit is None:
                self._tok.no_truncation()
            else:
                self._tok.enable_truncation(limit)
            self._truncate_at = limit
        encoded = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encoded]}

    def pad(self, batch: dict, return_tensors: str = "np") -> dict:
        """Pad ``batch["input_ids"]`` to its longest row: numpy ``input_ids`` and ``attention_mask`` (numpy only)."""
        if return_tensors != "np":
            raise ValueError(f"FileTokenizer pads to numpy only, not {return_tensors!r}")
        rows = batch["input_ids"]
        width = max((len(r) for r in rows), default=0)
        ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def _pad_token(folder: Path) -> str | None:
    """The padding token as transformers reads it: tokenizer_config.json, else special_tokens_map.json."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        try:
            value = json.loads((folder / name).read_text()).get("pad_token")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None
