"""The router registry: the four kinds, the one-module contract for a new kind, and refusal of unknown names."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from hetmoe.moe import routers
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.net import MoENet
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.train import fixed_gates


class LastK(routers.RouterKind):
    """A kind as one new module would define it: the last k experts for every market, gate 1."""

    name = "last-k"
    top_k = True

    def fixed_gates(self, spec: ModelSpec, market_names: np.ndarray) -> np.ndarray | None:
        gates = np.zeros((len(market_names), spec.n_experts), np.float32)
        gates[:, spec.n_experts - spec.k_eff:] = 1.0
        return gates

    def route(self, spec: ModelSpec, markets: np.ndarray, probs: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        idx = np.tile(np.arange(spec.n_experts - spec.k_eff, spec.n_experts, dtype=np.int64), (markets.shape[0], 1))
        return idx, np.ones(idx.shape, np.float32)


@pytest.fixture()
def last_k() -> Iterator[None]:
    routers.register(LastK)
    yield
    routers._KINDS.pop(LastK.name)


def _spec(router: str, k: int = 2) -> ModelSpec:
    return ModelSpec(experts=["a", "b", "c"], dims=[4, 5, 6], markets=["X"], router=router, k=k, rank=3, width=4,
                     hidden=0, router_dim=4, router_expert="a")


def test_the_four_kinds_and_their_properties() -> None:
    assert set(routers.router_names()) == {"hard", "soft", "none", "rule"}
    assert [n for n in routers.router_names() if routers.router_kind(n).candidate] == ["hard", "rule"]
    assert [_spec(n).k_eff for n in ("hard", "soft", "none")] == [2, 3, 3]
    assert [_spec(n).learned_router for n in ("hard", "soft", "none")] == [True, True, False]
    with pytest.raises(ValueError, match=r"router must be one of \(.*'hard'.*\), got 'nope'"):
        _spec("nope")


def test_a_new_kind_is_one_class_and_serves_and_trains(last_k: None) -> None:
    spec = _spec("last-k")
    assert spec.k_eff == 2 and not spec.learned_router
    torch.manual_seed(0)
    model = MoEModel(spec, MoENet(spec).numpy_weights())
    assert model.router_expert is None  # no query vector needed
    idx, gates = model.route(np.array(["X", "unseen"], dtype=object))
    assert idx.tolist() == [[1, 2], [1, 2]] and gates.tolist() == [[1.0, 1.0]] * 2

    class Pairs:
        market_names = np.array(["X", "X", "X"], dtype=object)

        def __len__(self) -> int:
            return 3

    assert fixed_gates(spec, Pairs()).tolist() == [[0.0, 1.0, 1.0]] * 3  # type: ignore[arg-type]


def test_rule_kind_prepares_its_table_and_falls_back_for_unknown_markets() -> None:
    spec = ModelSpec(experts=["a", "b", "c"], dims=[4, 5, 6], markets=["X"], router="rule", k=1, rank=3, width=4,
                     hidden=0, rule_table={"X": ["c"], "*": ["b"]})
    idx, gates = routers.router_kind("rule").route(spec, np.array(["X", "Z"], dtype=object), None)
    assert idx.tolist() == [[2], [1]] and gates.tolist() == [[1.0], [1.0]]
