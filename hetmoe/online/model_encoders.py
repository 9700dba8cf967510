"""A model's query encoders: built from the cards its config recorded, or handed over and checked against them.

Why a check: a handed-over encoder must be the very card the item vectors were made with (or one whose card states
it is interchangeable with it, :mod:`hetmoe.experts.runtime`); any other encoder makes every score meaningless.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hetmoe.errors import HetmoeError
from hetmoe.online.encoding import QueryEncoders

if TYPE_CHECKING:
    from hetmoe.experts.base import Encoder
    from hetmoe.moe.infer import MoEModel


def encodable(model: MoEModel) -> list[str]:
    """The experts whose query vectors the model may need: its own, and the router's."""
    router = model.router_expert
    return list(model.experts) + ([router] if router and router not in model.experts else [])


def model_encoders(model: MoEModel, encoders: Mapping[str, Encoder] | None, encode_cores: int | None) -> QueryEncoders:
    """The model's encoders (built lazily from its cards, one thread each: every call names its share of the cores),
    with ``encoders`` handed over in place of building them."""
    out = QueryEncoders(lambda expert: _build(model, expert), encodable(model), encode_cores)
    for expert, encoder in (encoders or {}).items():
        if expert not in out:
            raise HetmoeError(f"expert '{expert}' is not used by this model (has: {', '.join(encodable(model))})")
        _check(model, expert, encoder)
        out.add(expert, encoder)
    return out


def _card(model: MoEModel, expert: str) -> dict[str, Any]:
    card = model.cards.get(expert) or {}
    if not card:
        raise HetmoeError(f"the model's config.json records no card for expert '{expert}'; refit the model")
    return card


def _build(model: MoEModel, expert: str) -> Encoder:
    from hetmoe.experts.card import ExpertCard
    from hetmoe.experts.registry import build_encoder

    return build_encoder(ExpertCard.from_dict({**_card(model, expert), "threads": 1}))


def _check(model: MoEModel, expert: str, encoder: Encoder) -> None:
    from hetmoe.experts.card import ExpertCard
    from hetmoe.experts.runtime import interchangeable

    if not interchangeable(encoder.card, _card(model, expert)):
        raise HetmoeError(f"encoder for '{expert}' has card {encoder.card.hash}, but the model was fitted with "
                          f"{ExpertCard.from_dict(_card(model, expert)).hash}; build it from the model's card (or one "
                          "stating interchangeable_with)")
