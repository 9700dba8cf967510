"""Distillation from a teacher's logits, on a tiny synthetic pair set."""
from __future__ import annotations

import numpy as np

from hetmoe.metrics import auc
from hetmoe.moe.features import PairSet
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.train import TrainConfig, net_logits, train_net
from hetmoe.vectors import l2_normalize

DIMS = [8, 6]


def _pairs(n_q: int = 60, per_q: int = 10, seed: int = 0) -> PairSet:
    """Two experts whose cosine carries the label: relevant items are the query's vector plus noise."""
    rng = np.random.default_rng(seed)
    qi = np.repeat(np.arange(n_q), per_q)
    y = (rng.random(qi.size) < 0.4).astype(np.float32)
    q = [l2_normalize(rng.normal(size=(n_q, d))) for d in DIMS]
    d = [l2_normalize(np.where(y[:, None] > 0, qq[qi], 0.0) + rng.normal(size=(qi.size, qq.shape[1]))) for qq in q]
    return PairSet.from_arrays(["a", "b"], q, d, qi, np.arange(qi.size), y, ["X", "Y"], np.arange(n_q) % 2, q[1],
                               pair_stats="listwise")


def _spec(**over: object) -> ModelSpec:
    base = dict(experts=["a", "b"], dims=DIMS, markets=["X", "Y"], rank=4, width=6, hidden=8, router_dim=6, k=1)
    base.update(over)
    return ModelSpec(**base)  # type: ignore[arg-type]


def test_distillation_follows_the_teacher() -> None:
    train, stop = _pairs(seed=0), _pairs(seed=1)
    spec = _spec(router="none")
    cfg = TrainConfig(max_epochs=10, patience=10, batch_size=50, seed=0)
    plain = train_net(spec, train, stop, cfg)
    assert auc(net_logits(spec, plain.weights, train), train.y) > 0.75
    inverted = 8.0 * (0.5 - train.y)  # a teacher that ranks every relevant pair below every irrelevant one
    taught = train_net(spec, train, train, TrainConfig(max_epochs=10, patience=10, batch_size=50, seed=0, distill_weight=0.9), teacher=inverted)
    # Early stopping on the labels keeps the least-bad epoch, but the targets are mostly the teacher's: below chance.
    assert auc(net_logits(spec, taught.weights, train), train.y) < 0.5
