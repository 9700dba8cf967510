"""What the Scorer returns: plain dataclasses, so the service and library users share one shape."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Routing:
    """The experts a query was routed to (best first) and their gate weights."""

    experts: tuple[str, ...]
    gates: tuple[float, ...]

    def to_dict(self) -> dict[str, list]:
        return {"experts": list(self.experts), "gates": [float(g) for g in self.gates]}


@dataclass(frozen=True)
class ScoreRequest:
    """One query and the items to score for it (input of :meth:`Scorer.score_batch`)."""

    query: str
    item_ids: list[str]
    market: str


@dataclass(frozen=True)
class ScoreResult:
    """Scores for the known item ids, in request order; unknown ids are listed instead of raising, and so are the
    scored ids whose item belongs to another market than the request's."""

    item_ids: list[str]
    scores: np.ndarray
    routing: Routing
    unknown_item_ids: list[str] = field(default_factory=list)
    other_market_item_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "item_ids": self.item_ids,
            "scores": self.scores.astype(float).tolist(),
            "unknown_item_ids": self.unknown_item_ids,
            "other_market_item_ids": self.other_market_item_ids,
            **self.routing.to_dict(),
        }


@dataclass(frozen=True)
class SearchResult:
    """Top items by head score; ``seen_by[i]`` names the routed experts whose index retrieved item i."""

    item_ids: list[str]
    scores: np.ndarray
    seen_by: list[list[str]]
    routing: Routing
    candidates: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "item_ids": self.item_ids,
            "scores": self.scores.astype(float).tolist(),
            "seen_by": self.seen_by,
            "candidates": self.candidates,
            **self.routing.to_dict(),
        }
