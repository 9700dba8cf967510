"""Checks of what a caller asks the Scorer for, in one place for the Python API and HTTP alike.

Why here and not only in the service: a library call with ``market="sg"`` used to rank every market's items and
``market="XX"`` or an empty query were scored as if they meant something. The Scorer raises
:class:`RequestError` (naming the field) for those; the service answers it with a 422, and
:class:`SearchUnavailable` (a Scorer without FAISS indexes) with a 503. Size limits that only protect a shared
service (ids per request, query length, k) stay in the service.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.vectors import bad_rows, describe_bad_rows

SHOWN_CHARS = 40  # characters of a query text an error shows


class RequestError(HetmoeError):
    """A request value that cannot be served; ``field`` names it (the message starts with it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SearchUnavailable(HetmoeError):
    """The Scorer was loaded without FAISS indexes, so it can score given ids but not search."""


def valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from "\ud800" escapes: no encoder or JSON writer accepts them
        return False
    return True


def check_query(query: object) -> str:
    if not isinstance(query, str):
        raise RequestError("query", f"must be a string, got {type(query).__name__}")
    if not valid_unicode(query):
        raise RequestError("query", "not valid Unicode (lone surrogate)")
    if not query.strip():
        raise RequestError("query", "must not be empty or only whitespace")
    return query


def check_market(market: object, known: Collection[str]) -> str:
    """A market the model was fitted on (case matters: item markets are compared exactly)."""
    if isinstance(market, str) and market in known:
        return market
    shown = repr(market if not isinstance(market, str) or len(market) <= 40 else market[:40] + "...")
    near = [m for m in known if isinstance(market, str) and m.lower() == market.strip().lower()]
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise RequestError("market", f"unknown market {shown}{hint}; known markets: {', '.join(sorted(known))}")


def check_item_ids(item_ids: object) -> list[str]:
    """A non-empty list of string ids (a bare string would be read as one id per character)."""
    if isinstance(item_ids, (str, bytes)) or not isinstance(item_ids, Sequence):
        raise RequestError("item_ids", f"must be a list of item id strings, got {type(item_ids).__name__}")
    if not item_ids:
        raise RequestError("item_ids", "must list at least one item id")
    bad = next((i for i, v in enumerate(item_ids) if not isinstance(v, str)), None)
    if bad is not None:
        raise RequestError(f"item_ids[{bad}]", f"must be a string, got {type(item_ids[bad]).__name__}")
    if not valid_unicode("".join(item_ids)):
        raise RequestError("item_ids", "an id is not valid Unicode (lone surrogate)")
    return list(item_ids)


def check_count(field: str, value: object) -> int:
    """A positive int (bool is not a count)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestError(field, f"must be an integer >= 1, got {value!r}")
    return value


def check_encoded(expert: str, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    """An encoder's query vectors, refused when one is all zero or not finite (nothing of the text reached the model,
    or the model failed): a head would score it as confidently as a real one."""
    bad = bad_rows(vectors)
    if bad.size:
        shown = [repr(t if len(t) <= SHOWN_CHARS else t[:SHOWN_CHARS] + "...") for t in texts]
        raise RequestError("query", f"expert '{expert}' encodes it to {describe_bad_rows(vectors, bad, shown)}; "
                                    "rephrase the query with words the expert knows")
    return vectors

