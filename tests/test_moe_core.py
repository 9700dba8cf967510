"""Router, balance loss and inference core on small synthetic arrays (no stores, no models)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from hetmoe.errors import HetmoeError
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.net import MoENet, switch_loss, top_k_gates
from hetmoe.moe.pairstats import group_stats
from hetmoe.moe.reference import reference_stats
from hetmoe.moe.spec import ModelSpec
from hetmoe.pairs.arrays import in_memory_features
from hetmoe.pairs.features import PairFeatures
from hetmoe.vectors import l2_normalize

DIMS = [8, 12, 6, 5]


def _spec(**over: object) -> ModelSpec:
    base = dict(experts=["a", "b", "c", "d"], dims=DIMS, markets=["X", "Y"], rank=5, width=7, hidden=9,
                router_dim=5, router_expert="d", k=2)
    base.update(over)
    return ModelSpec(**base)  # type: ignore[arg-type]


def _inputs(spec: ModelSpec, n_q: int = 3, per_q: int = 6, seed: int = 0) -> dict[str, object]:
    """Queries of markets X, Y and an unknown Z, their items, and 40 more catalog items per query market: the pairs'
    features (``feats``) from the one feature path, and the same statistics as the torch net reads them."""
    rng = np.random.default_rng(seed)
    q = [l2_normalize(rng.normal(size=(n_q, d))) for d in spec.dims]
    catalog = [l2_normalize(rng.normal(size=(n_q * (per_q + 40), d))).astype(np.float16).astype(np.float32)
               for d in spec.dims]  # items as a store holds them (float16)
    groups = np.repeat(np.arange(n_q), per_q)
    markets = (["X", "Y", "Z"] * n_q)[:n_q]
    item_markets = [markets[i] for i in groups] + [markets[i % n_q] for i in range(n_q * 40)]
    feats = in_memory_features(dict(zip(spec.experts, q)), dict(zip(spec.experts, catalog)), groups,
                               np.arange(groups.shape[0]), markets, item_markets=item_markets,
                               pair_stats=spec.pair_stats, ref_top=spec.ref_top)
    stats = np.stack([feats.block("stats", e)[:, [0, 2, 3]] for e in spec.experts], axis=1)
    return {"q": q, "d": [c[: groups.shape[0]] for c in catalog], "groups": groups, "stats": stats, "feats": feats,
            "rvec": l2_normalize(rng.normal(size=(n_q, spec.router_dim))),
            "market": np.array([0, 1, -1][:n_q] + [0] * max(0, n_q - 3)), "markets": np.array(markets, dtype=object)}


def _torch_logits(net: MoENet, x: dict[str, object]) -> torch.Tensor:
    return net(
        [torch.from_numpy(m) for m in x["q"]], [torch.from_numpy(m) for m in x["d"]], torch.from_numpy(x["stats"]),
        torch.from_numpy(x["groups"]), torch.from_numpy(x["market"]), torch.from_numpy(x["rvec"]),
    )


def test_switch_loss_is_not_constant_and_its_gradient_pushes_towards_balance() -> None:
    n = 4
    uniform = torch.full((8, n), 1.0 / n)
    mask_uniform = torch.zeros(8, n).scatter_(1, torch.arange(8)[:, None] % n, 1.0)
    assert switch_loss(uniform, mask_uniform).item() == pytest.approx(1.0)
    logits = torch.tensor([[3.0, 0.0, 0.0, 0.0]] * 8, requires_grad=True)
    probs = torch.softmax(logits, 1)
    _, mask = top_k_gates(probs, 1)
    loss = switch_loss(probs, mask)
    assert loss.item() > 2.0  # everything on expert 0: far above the balanced value 1
    loss.backward()
    with torch.no_grad():
        stepped = torch.softmax(logits - 1.0 * logits.grad, 1)
    assert stepped[:, 0].mean() < probs[:, 0].mean()  # one descent step moves mass away from the overloaded expert
    assert switch_loss(stepped, mask).item() < loss.item()


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_top_k_routing_selects_exactly_k(k: int) -> None:
    spec = _spec(k=k)
    torch.manual_seed(0)
    model = MoEModel(spec, MoENet(spec).numpy_weights())
    rvec = l2_normalize(np.random.default_rng(1).normal(size=(50, spec.router_dim)))
    idx, gates = model.route(np.array(["X", "Y"] * 25, dtype=object), rvec)
    assert idx.shape == gates.shape == (50, k)
    assert all(len(set(row)) == k for row in idx.tolist())
    assert np.allclose(gates.sum(1), 1.0, atol=1e-6)
    probs = torch.softmax(torch.randn(50, 4), 1)
    dense, mask = top_k_gates(probs, k)
    assert torch.all(mask.sum(1) == k) and torch.all((dense > 0).sum(1) == k)


def test_gradients_reach_the_router() -> None:
    spec = _spec(router_noise=0.0)
    torch.manual_seed(0)
    net = MoENet(spec)
    x = _inputs(spec)
    logits, aux, _ = _torch_logits(net, x)
    (logits.sum() + 0 * aux).backward()  # the head loss alone, without the balance term
    grads = [p.grad for p in net.router.parameters() if p.requires_grad]  # the prior is fixed
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("pair_stats", ["reference", "listwise"])
@pytest.mark.parametrize("router,fusion,hidden", [("hard", "concat", 9), ("hard", "weighted", 9), ("hard", "concat", 0),
                                                  ("soft", "concat", 9), ("none", "concat", 9), ("none", "weighted", 0),
                                                  ("hard", "average", 9), ("none", "average", 0)])
def test_numpy_inference_equals_torch(router: str, fusion: str, hidden: int, pair_stats: str) -> None:
    spec = _spec(router=router, fusion=fusion, hidden=hidden, soft_threshold=0.0, pair_stats=pair_stats)
    torch.manual_seed(3)
    net = MoENet(spec).eval()
    x = _inputs(spec)
    net.set_centers([0.3 * m.mean(0) for m in x["d"]])  # non-zero centres: numpy must re-centre exactly like torch
    net.set_prior(np.random.default_rng(5).normal(size=(3, 4)))  # per-market router bias, unknown market last
    with torch.no_grad():
        expected = _torch_logits(net, x)[0].numpy()
    model = MoEModel(spec, net.numpy_weights())
    routing = model.route(x["markets"], x["rvec"])  # Z: unknown market, routed by the query vector alone
    got = model.logits(x["feats"], routing)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def _routed_only(x: dict[str, object], routing: tuple[np.ndarray, np.ndarray], model: MoEModel,
                 items: np.ndarray | None = None) -> object:
    """The features of ``x`` with each query row carrying only its routed experts' vectors (as the Scorer encodes),
    optionally over the pairs ``items`` alone."""
    feats = x["feats"]
    routed = model.dense_gates(routing) > 0
    has = {e: routed[:, i] for i, e in enumerate(model.experts)}
    batch = replace(feats.batch, has=has) if items is None else replace(feats.batch, has=has, qi=feats.batch.qi[items],
                                                                          di=feats.batch.di[items])
    return PairFeatures(batch, feats.context, feats.blocks)


def test_score_needs_only_routed_experts() -> None:
    spec = _spec()
    torch.manual_seed(0)
    model = MoEModel(spec, MoENet(spec).numpy_weights())
    x = _inputs(spec, n_q=1)
    routing = model.route(x["markets"], x["rvec"])
    needed = model.routed_experts(routing)[0]
    assert len(needed) == 2
    scores = model.score(_routed_only(x, routing, model), routing)
    assert scores.shape == (6,) and np.all((scores > 0) & (scores < 1))
    assert model.project_items("a", x["d"][0]).shape == (6, spec.rank)


def test_reference_scores_do_not_depend_on_the_other_items() -> None:
    spec = _spec(router="none")
    torch.manual_seed(0)
    model = MoEModel(spec, MoENet(spec).numpy_weights())
    x = _inputs(spec, n_q=1, per_q=12)
    routing = model.route(x["markets"], x["rvec"])
    together = model.score(_routed_only(x, routing, model), routing)
    alone = [model.score(_routed_only(x, routing, model, np.array([j])), routing)[0] for j in range(12)]
    assert np.array_equal(alone, together)  # bit for bit: a pair's score does not depend on its companions
    listwise = replace(spec, pair_stats="listwise")
    lw = MoEModel(listwise, MoENet(listwise).numpy_weights())
    y = _inputs(listwise, n_q=1, per_q=12)
    lw_together = lw.score(y["feats"], routing)
    lw_alone = lw.score(_routed_only(y, routing, lw, np.array([0])), routing)[0]
    assert abs(lw_alone - lw_together[0]) > 1e-6  # the listwise option does depend on its companions, as documented


def test_a_model_refuses_to_score_a_routed_expert_without_its_query_vectors() -> None:
    spec = _spec(router="none")
    model = MoEModel(spec, MoENet(spec).numpy_weights())
    x = _inputs(spec, n_q=1)
    routing = model.route(x["markets"], x["rvec"])
    feats = x["feats"]
    missing = PairFeatures(feats.batch.select_experts(["a", "b"]), feats.context, feats.blocks)
    with pytest.raises(HetmoeError, match="expert 'c' is routed but its query vectors"):
        model.score(missing, routing)


def test_reference_stats_z_and_gap_against_the_querys_row() -> None:
    row = np.array([[0.9, 0.8, 0.5, 0.1]], np.float32)
    stats = reference_stats(np.array([0.9, -1.0], np.float32), row.repeat(2, 0))
    assert stats[0, 2] == pytest.approx(0.0, abs=1e-6) and stats[1, 2] < 0 and stats[1, 1] < stats[0, 1]
    assert stats[0, 1] == pytest.approx((0.9 - row.mean()) / row.std(), rel=1e-5)


def test_group_stats_z_score_and_rank() -> None:
    cos = np.array([0.1, 0.3, 0.2, 0.9, 0.9])
    groups = np.array([0, 0, 0, 1, 1])
    s = group_stats(cos, groups)
    np.testing.assert_allclose(s[:3, 2], [0.0, 1.0, 0.5])
    np.testing.assert_allclose(s[3:, 2], [0.5, 0.5])  # ties share their average rank
    np.testing.assert_allclose(s[:3, 1], (cos[:3] - cos[:3].mean()) / cos[:3].std(), rtol=1e-5)
    np.testing.assert_allclose(s[3:, 1], [0.0, 0.0])


def test_the_router_prior_sends_a_market_to_its_best_experts() -> None:
    from hetmoe.moe.rule import router_prior
    from hetmoe.moe.train import market_weights

    spec = _spec(router_noise=0.0)
    torch.manual_seed(0)
    net = MoENet(spec)
    with torch.no_grad():  # a router that has learned nothing: routing is the prior alone
        net.router.l2.weight.zero_()
        net.router.l2.bias.zero_()
    prior = np.array([[0.0, -3.0, -3.0, -0.5], [-3.0, 0.0, -0.2, -3.0], [-1.0, -1.0, 0.0, 0.0]], np.float32)
    net.set_prior(prior)
    model = MoEModel(spec, net.numpy_weights())
    idx, _ = model.route(np.array(["X", "Y", "NEW"], dtype=object), l2_normalize(np.ones((3, spec.router_dim))))
    assert [sorted(r) for r in idx.tolist()] == [[0, 3], [1, 2], [2, 3]]

    class Pairs:  # the two fields router_prior and market_weights read
        experts = ["a", "b"]
        y = np.array([1, 0, 1, 0, 1, 0, 0, 0], np.float32)
        stats = np.zeros((8, 2, 3), np.float32)
        market_names = np.array(["X"] * 4 + ["Y"] * 2 + ["Y"] * 2, dtype=object)

        def __len__(self) -> int:
            return 8

    pairs = Pairs()
    pairs.stats[:, 0, 0] = [0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.5, 0.5]  # a ranks X perfectly, Y badly
    pairs.stats[:, 1, 0] = [0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.2, 0.3]  # b the other way round
    table = router_prior(pairs, ["X", "Y", "Z"], strength=10.0)  # type: ignore[arg-type]
    assert table.shape == (4, 2)
    assert table[0, 0] == 0.0 and table[0, 1] == pytest.approx(-10.0)
    assert table[1, 1] == 0.0 and table[1, 0] < -5.0
    np.testing.assert_allclose(table[2], table[3])  # a market without pairs gets the unknown-market row
    equal = market_weights(pairs, power=0.0)  # type: ignore[arg-type]
    assert equal[:4].sum() == pytest.approx(equal[4:].sum()) and equal.mean() == pytest.approx(1.0)
    np.testing.assert_allclose(market_weights(pairs, power=1.0), np.ones(8))  # type: ignore[arg-type]


def test_market_weights_give_a_market_a_share_that_grows_as_the_power_of_its_pairs() -> None:
    """The default sits between equal markets and equal pairs: a 100x bigger market weighs 10x more, not 100x or 1x."""
    from hetmoe.moe.train import market_weights

    class Pairs:
        market_names = np.array(["big"] * 400 + ["small"] * 4, dtype=object)

        def __len__(self) -> int:
            return 404

    w = market_weights(Pairs())  # type: ignore[arg-type]  # the default weighting
    assert w[:400].sum() / w[400:].sum() == pytest.approx(10.0)
    assert w.mean() == pytest.approx(1.0)
    assert w[400] / w[0] == pytest.approx(10.0)  # each small-market pair still counts 10x a big-market one


def test_the_stacked_booster_scores_a_pair_alone_as_in_a_block_past_the_serial_threshold() -> None:
    """Small calls (the Scorer's) predict on one thread, large ones (eval, bulk) on LightGBM's team: same scores."""
    import lightgbm as lgb

    from hetmoe.moe.heads.trees import SERIAL_PREDICT_PAIRS, predict_raw

    rng = np.random.default_rng(3)
    x = rng.normal(size=(SERIAL_PREDICT_PAIRS + 500, 12)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(scale=0.5, size=x.shape[0]) > 0).astype(int)
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 15, "seed": 0},
                        lgb.Dataset(x, y), num_boost_round=40)
    block = predict_raw(booster, x)
    alone = np.concatenate([predict_raw(booster, x[i : i + 100]) for i in range(0, x.shape[0], 100)])
    assert np.array_equal(block, alone) and np.unique(block).size > 100


def _pid(_: int) -> int:
    import os

    return os.getpid()


def test_jobs_fork_only_when_each_runs_on_one_thread() -> None:
    import os

    from hetmoe.moe.jobs import run_jobs

    jobs = [(_pid, (i,)) for i in range(4)]
    forked = run_jobs(jobs, 2, threads=1)
    assert len(forked) == 4 and os.getpid() not in forked  # in child processes
    for threads in (0, 2):  # a multi-thread job never runs in a forked child (libgomp is not fork-safe)
        assert run_jobs(jobs, 2, threads=threads) == [os.getpid()] * 4
