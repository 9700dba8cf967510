"""Router kinds: one module per kind, each holding its training gate (torch) and its serving route (numpy) side by
side, so the two can never drift apart.

Why a registry: the kind named in a ``RoutedSpec`` decides how the net gates experts in training, which experts the
numpy model routes online, and whether a query vector is needed at all. Adding a router is one new module in this
package that subclasses :class:`RouterKind` and decorates it with :func:`register`; every module here is imported
when the registry is first read.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import replace
from typing import Any, ClassVar, Protocol

import numpy as np

_KINDS: dict[str, RouterKind] = {}


class RoutedSpec(Protocol):
    """What a router kind reads of a :class:`hetmoe.moe.spec.ModelSpec` (which imports this registry)."""

    experts: list[str]
    k: int
    soft_threshold: float
    rule_table: dict[str, list[str]]

    @property
    def n_experts(self) -> int: ...

    @property
    def k_eff(self) -> int: ...


class RouterKind:
    """One way of choosing a query's experts. ``learned``: a trained network reads the market and the router
    expert's query vector; ``top_k``: exactly k experts per query (else every expert, possibly with gate 0)."""

    name: ClassVar[str]
    learned: ClassVar[bool] = False
    top_k: ClassVar[bool] = False
    candidate: ClassVar[bool] = False  # the MoE's selection trains this kind at every k (:mod:`hetmoe.moe.select`)

    def prepare(self, spec: RoutedSpec, train: Any, k: int) -> RoutedSpec:
        """The candidate spec at ``k`` routed by this kind; kinds that fit something besides the net on the ``train``
        pairs (a rule table) do it here, so the early-stopping pairs that choose among candidates judge it fairly."""
        return replace(spec, k=k, router=self.name, rule_table={})

    def train_gates(self, probs: Any, top_gates: Any) -> Any:
        """Learned kinds: the (U, N) torch gates the head sees in training, from the router's softmax ``probs`` and
        its renormalised top-k ``top_gates``."""
        raise NotImplementedError(f"router {self.name!r} has no trained network")

    def fixed_gates(self, spec: RoutedSpec, market_names: np.ndarray) -> np.ndarray | None:
        """Kinds without a network: per pair (n, N) training gates, None for "every expert, gate 1"."""
        return None

    def route(self, spec: RoutedSpec, markets: np.ndarray, probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Serving: (expert_idx (n, m) int64, gates (n, m) float32) per query; ``probs`` is the router's (n, N)
        softmax for learned kinds, None otherwise."""
        raise NotImplementedError


def register(cls: type[RouterKind]) -> type[RouterKind]:
    """Class decorator: make the kind known by its ``name``."""
    _KINDS[cls.name] = cls()
    return cls


def _load() -> dict[str, RouterKind]:
    if not _KINDS:
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            importlib.import_module(f"{__name__}.{info.name}")
    return _KINDS


def router_names() -> tuple[str, ...]:
    """Every kind, in module name order (the order selection tries candidates in)."""
    return tuple(_load())


def router_kind(name: str) -> RouterKind:
    kinds = _load()
    if name not in kinds:
        raise ValueError(f"router must be one of {tuple(kinds)}, got {name!r}")
    return kinds[name]


def every_expert(n_queries: int, n_experts: int) -> tuple[np.ndarray, np.ndarray]:
    """Every expert with gate 1 (full concatenation)."""
    return np.tile(np.arange(n_experts, dtype=np.int64), (n_queries, 1)), np.ones((n_queries, n_experts), np.float32)
