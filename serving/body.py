"""A ``POST /predict`` body to a list of texts, or a ``RequestError`` carrying its HTTP status and a message.

Accepted: a UTF-8 JSON object ``{"texts": [str, ...]}`` (any Content-Type, so ``curl -d`` works).
Refused, each with a message that names what was found, the limit and the option that raises it:

- 413: a body over ``max_body_bytes`` (``--max-body-bytes``);
- 400: an empty body, bytes that are not UTF-8, text that is not JSON (or nested past Python's limit);
- 422: JSON of the wrong shape (not an object, no ``texts``, other keys, ``texts`` not a list),
  more than ``max_texts`` texts (``--max-texts``), and, naming its index, the first text that is
  not a string, is empty or only whitespace, is longer than ``max_text_chars`` characters
  (``--max-text-chars``) or holds an unpaired surrogate (``"\\ud800"``: not Unicode text).

A text longer than the model's max tokens is not refused: it is truncated and flagged
(``"truncated": true``), as ``score`` counts it.
"""
from __future__ import annotations

import json

from embed.errors import DataError

from .config import ServeConfig

_EXAMPLE = '{"texts": ["what a debate"]}'
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


class RequestError(DataError):
    """A request the server refuses: ``status`` (400, 413, 422, 503), a ``code`` and the message."""

    def __init__(self, status: int, code: str, message: str, **fields):
        super().__init__(message)
        self.status, self.code, self.fields = status, code, fields

    def body(self) -> dict:
        """The JSON the client gets: ``{"error": message, "code": code, ...fields such as index, limit}``."""
        return {"error": str(self), "code": self.code, **self.fields}


def too_large(size: int | None, limit: int) -> RequestError:
    """413 for a body of ``size`` bytes (None: a chunked body, stopped once it passed the limit)."""
    said = f"is {size:,} bytes, over" if size is not None else "passes"
    return RequestError(413, "body_too_large", f"the request body {said} the limit of {limit:,} bytes "
                        "(--max-body-bytes); send fewer texts per request, or restart serve with a larger "
                        "--max-body-bytes", limit=limit)


def parse_texts(body: bytes, config: ServeConfig) -> list[str]:
    """The texts of a ``/predict`` body (already within ``max_body_bytes``), checked; else ``RequestError``."""
    if not body.strip():
        raise RequestError(400, "empty_body", f"the request body is empty; send a JSON object such as {_EXAMPLE}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "invalid_utf8", f"the request body is not valid UTF-8 (byte {exc.start:,}: "
                           f"0x{body[exc.start]:02x}); send the JSON encoded as UTF-8", byte=exc.start) from None
    try:
        data = json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise RequestError(400, "invalid_json", f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}); send a JSON object such as {_EXAMPLE}") from None
    except RecursionError:
        raise RequestError(400, "invalid_json", "the request body nests JSON too deeply to read; send a JSON object "
                           f"such as {_EXAMPLE}") from None
    return check_texts(data, config)


def check_texts(data, config: ServeConfig) -> list[str]:
    """``data["texts"]`` when ``data`` is ``{"texts": [str, ...]}`` within the limits; else ``RequestError`` (422)."""
    if not isinstance(data, dict):
        hint = "; wrap the list: {\"texts\": [...]}" if isinstance(data, list) else ""
        raise RequestError(422, "wrong_shape", f"expected a JSON object such as {_EXAMPLE}, got {_kind(data)}{hint}")
    if "texts" not in data:
        hint = ' (found "text": send a list, "texts": ["..."])' if "text" in data else ""
        raise RequestError(422, "wrong_shape", f'the object has no "texts" key{hint}; send {_EXAMPLE}')
    other = sorted(set(data) - {"texts"})
    if other:
        raise RequestError(422, "wrong_shape", f"unknown key(s) {', '.join(map(repr, other))}: the only key is "
                           f'"texts"; send {_EXAMPLE}')
    texts = data["texts"]
    if not isinstance(texts, list):
        hint = ' (one text: ["..."])' if isinstance(texts, str) else ""
        raise RequestError(422, "wrong_shape", f'"texts" must be a list of strings, got {_kind(texts)}{hint}')
    if len(texts) > config.max_texts:
        raise RequestError(422, "too_many_texts", f"the request has {len(texts):,} texts, over the limit of "
                           f"{config.max_texts:,} per request (--max-texts): text {config.max_texts:,} is the first "
                           "past it; send fewer per request (score classifies whole files), or restart serve with a "
                           "larger --max-texts", index=config.max_texts, limit=config.max_texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(422, "not_a_string", f"text {i} is {_kind(text)}, not a string; send every text as "
                               "a JSON string", index=i)
        if not text.strip():
            raise RequestError(422, "empty_text", f"text {i} is empty{' (only whitespace)' if text else ''}: there is "
                               "nothing to classify; leave it out or give it a text", index=i)
        if len(text) > config.max_text_chars:
            raise RequestError(422, "text_too_long", f"text {i} is {len(text):,} characters, over the limit of "
                               f"{config.max_text_chars:,} (--max-text-chars); shorten it, or restart serve with a "
                               "larger --max-text-chars (past the model's max tokens a text is truncated and "
                               "flagged either way)", index=i, limit=config.max_text_chars)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RequestError(422, "invalid_text", f"text {i} holds an unpaired surrogate ({text[exc.start]!r} at "
                               f"character {exc.start:,}), which is not Unicode text; send the character itself "
                               "or a whole surrogate pair", index=i) from None
    return texts


def _kind(value) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)
