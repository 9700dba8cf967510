"""``evaluate``: score every trained variant on one split and write report.json / report.md / report.png.

Net variants are scored through the same numpy inference path the online Scorer uses (``MoEModel.score``), so the
reported numbers are the served model's numbers. The best single expert is the one with the highest macro AUC on the
reported split itself (the strongest possible single-expert competitor), and the MoE's margin over it carries 95%
bootstrap CIs over queries (resampled within markets). Fusions are compared head for head (:mod:`hetmoe.moe.compare`),
and the report records where it was made: the fit's and this evaluation's machines, libraries, threads and seeds
(:mod:`hetmoe.provenance`).
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hetmoe.data.validate import check_dataset
from hetmoe.errors import HetmoeError
from hetmoe.metrics import auc, auc_by_market, bootstrap_delta, macro, ranking_metrics
from hetmoe.moe.artifacts import read_config
from hetmoe.moe.compare import fusion_comparisons, moe_heads
from hetmoe.moe.features import PairSet, load_pairs
from hetmoe.moe.guard import market_guard
from hetmoe.moe.variants import REPORT_ORDER
from hetmoe.provenance import machine, results_link
from hetmoe.vectors import check_scores

log = logging.getLogger(__name__)


def score_net(model: Any, pairs: PairSet) -> tuple[np.ndarray, np.ndarray]:
    """(pair scores, dense (n_queries, N) gates) of a net variant over ``pairs`` (its experts are a subset of theirs):
    the pairs' feature blocks, as the Scorer computes them, through the model's heads."""
    markets = np.asarray(pairs.markets, dtype=object)[pairs.q_market]
    routing = model.route(markets, pairs.rvec if model.router_expert else None)
    scores = model.score(pairs.features.select_experts(model.experts), routing)
    return scores, model.dense_gates(routing)


def model_pairs(model: Any, dataset: Any, splits: list[str], store_root: str | Path | None = None,
                neighbourhood: bool | None = None) -> PairSet:
    """The judged pairs of ``splits`` as ``eval`` loads them for ``model`` (an MoEModel): its experts, markets,
    pair statistics, lexical store and, when its head reads them (or ``neighbourhood`` says so), item
    neighbourhoods; from its own stores unless ``store_root`` names others."""
    spec = model.spec
    wanted = spec.item_neighbourhood if neighbourhood is None else neighbourhood
    return load_pairs(dataset, store_root or model.store_root, model.experts, splits, spec.router_expert,
                      markets=model.markets, pair_stats=spec.pair_stats, ref_top=spec.ref_top,
                      lexical_store=spec.lexical_store, neighbourhood=wanted, extra_blocks=spec.extra_blocks)


ZERO_SHOT = "zero-shot"  # report rows "zero-shot:<expert>": the expert's raw cosine, no training


def variant_metrics(scores: np.ndarray, rank_scores: np.ndarray, pairs: PairSet) -> dict[str, Any]:
    """AUC (pooled, per market, macro) of ``scores``; MRR, Recall@k and nDCG@k of ``rank_scores`` over all queries
    (the pooled keys), per market and as the mean over markets (``ranking_macro``)."""
    names = pairs.market_names
    by_market = auc_by_market(scores, pairs.y, names)
    ranking = {str(m): ranking_metrics(rank_scores[names == m], pairs.y[names == m], pairs.label[names == m],
                                       pairs.qi[names == m]) for m in np.unique(names)}
    pooled = ranking_metrics(rank_scores, pairs.y, pairs.label, pairs.qi)
    return {
        "auc": auc(scores, pairs.y),
        "auc_macro": macro(by_market),
        "auc_by_market": by_market,
        **pooled,
        "ranking_by_market": ranking,
        "ranking_macro": {key: macro({m: v[key] for m, v in ranking.items()}) for key in pooled},
    }


def zero_shot(pairs: PairSet, experts: list[str]) -> dict[str, dict[str, Any]]:
    """Each expert alone, untrained: its raw query-item cosine as the score (the first number a team compares a
    model with); routed to that one expert."""
    rows, stats = {}, pairs.stats  # (pairs, experts, statistics); statistic 0 is the raw cosine
    for expert in experts:
        cosine = stats[:, pairs.experts.index(expert), 0]
        result = variant_metrics(cosine, cosine, pairs)
        result.update(routing_summary(np.ones((pairs.q_market.shape[0], 1)), [expert], experts, pairs))
        rows[f"{ZERO_SHOT}:{expert}"] = result
    return rows


def routing_summary(dense: np.ndarray, experts: list[str], all_experts: list[str], pairs: PairSet) -> dict[str, Any]:
    """Share of queries sent to each expert (overall and per market) and experts run per query."""
    present = np.unique(pairs.qi)
    used = dense[present] > 0
    q_markets = np.asarray(pairs.markets, dtype=object)[pairs.q_market[present]]
    share = {e: 0.0 for e in all_experts}
    share.update({e: float(used[:, j].mean()) for j, e in enumerate(experts)})
    by_market = {}
    for m in np.unique(q_markets):
        sel = used[q_markets == m]
        by_market[str(m)] = {e: (float(sel[:, experts.index(e)].mean()) if e in experts else 0.0) for e in all_experts}
    return {"experts_per_query": float(used.sum(1).mean()), "routing_share": share, "routing_share_by_market": by_market}


def _fit_index(model_dir: Path) -> dict[str, Any]:
    """The fit's fit.json (variants, MoE selection, where it was made); {} for a lone model folder."""
    path = model_dir / "fit.json"
    if not path.is_file():
        return {}
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise HetmoeError(f"{path}: not valid JSON ({type(err).__name__}); fit the model again") from err
    if not isinstance(index, dict) or not isinstance(index.get("variants"), dict):
        raise HetmoeError(f"{path}: no 'variants' table; fit the model again")
    return index


def _variants(model_dir: Path) -> dict[str, Path]:
    index = _fit_index(model_dir)
    return {name: model_dir / rel for name, rel in index["variants"].items()} if index else {"moe": model_dir}


def evaluate(
    model_dir: str | Path, data_dir: str | Path, split: str, out_dir: str | Path, store_root: str | Path | None = None
) -> dict[str, Any]:
    """Score all variants of ``model_dir`` on ``split`` of ``data_dir``; writes report.{json,md,png} into ``out_dir``."""
    from hetmoe.moe.infer import MoEModel
    from hetmoe.moe.lgbm import LgbmModel
    from hetmoe.moe.report import write_reports

    model_dir = Path(model_dir)
    main = read_config(model_dir)
    store_root = Path(store_root) if store_root else Path(main["store_root"])
    dataset = check_dataset(data_dir)
    if not dataset.has_split(split):
        raise HetmoeError(f"{data_dir}: no '{split}' judgments to evaluate on; choose one of the splits it has")
    moe = MoEModel.load(model_dir, store_root=store_root)
    splits_seen = main.get("splits", {})
    pairs = model_pairs(moe, dataset, [split], store_root, neighbourhood=_reads_neighbourhood(model_dir))
    evaluated = set(pairs.market_names.tolist())
    trained = sorted(evaluated & set(moe.markets))  # an unseen market's train split is clean
    if trained and (splits_seen.get("early_stopping") == f"split '{split}'" or split == "train"):
        log.warning("split '%s' of %s was used in training: its numbers are optimistic", split, ", ".join(trained))
    variants: dict[str, Any] = {}
    scores_of: dict[str, np.ndarray] = {}
    configs: dict[str, dict[str, Any]] = {}
    index = _fit_index(model_dir)
    stacked_moe = moe_heads(index.get("moe_selection", {}), set(_variants(model_dir))).get("stacked")
    stacked_net = None  # the stacked MoE's scores through its own net: the stacked head's gain is against these
    for name, path in _variants(model_dir).items():
        if name == "lightgbm":
            lgbm = LgbmModel.load(path)
            binary, ranked = lgbm.predict(pairs.select_experts(lgbm.experts))
            result = variant_metrics(binary, ranked, pairs)
            n_q = pairs.q_market.shape[0]
            result.update(routing_summary(np.ones((n_q, len(lgbm.experts))), lgbm.experts, moe.experts, pairs))
            scores_of[name] = binary
        else:
            model = moe if name == "moe" else MoEModel.load(path, store_root=store_root)
            configs[name] = model.config
            scores, dense = score_net(model, pairs)
            if name == stacked_moe and model.stack is not None:
                stacked_net, _ = score_net(replace(model, stack=None), pairs)
            result = variant_metrics(scores, scores, pairs)
            result.update(routing_summary(dense, model.experts, moe.experts, pairs))
            scores_of[name] = scores
        check_scores(scores_of[name], f"variant {name} on split '{split}'")
        variants[name] = result
    variants.update(zero_shot(pairs, moe.experts))
    for name, result in variants.items():
        log.info("%-18s AUC %.4f  macro %.4f  MRR %.4f  nDCG@10 %.4f", name, result["auc"], result["auc_macro"],
                 result["mrr"], result["ndcg10"])
    report: dict[str, Any] = {
        "dataset": str(Path(data_dir).resolve()),
        "split": split,
        "model": str(model_dir.resolve()),
        "pairs": len(pairs),
        "queries": int(np.unique(pairs.qi).size),
        "markets": sorted(evaluated),
        "unseen_markets": sorted(evaluated - set(moe.markets)),
        "transfer_head": moe.transfer is not None,
        "trained_on": splits_seen,
        "router_expert": moe.router_expert,
        "k": moe.spec.k,
        "n_experts": moe.spec.n_experts,
        "variants": {n: variants[n] for n in _ordered(variants)},
    }
    singles = [n for n in variants if n.startswith("single:")]
    if singles:
        best = max(singles, key=lambda n: (variants[n]["auc_macro"], variants[n]["auc"]))
        delta = bootstrap_delta(scores_of["moe"], scores_of[best], pairs.y, pairs.qi, pairs.market_names)
        report["moe_vs_best_single"] = {"best_single": best, **delta}
    report.update(fusion_comparisons(index.get("moe_selection", {}), configs, scores_of, pairs, stacked_net))
    report["made"] = {**_made(index, main, data_dir), "results_link": results_link(Path(out_dir))}
    if "moe" in scores_of:
        report["market_guard"] = market_guard(scores_of, pairs.y, pairs.qi, pairs.market_names)
    write_reports(report, Path(out_dir))
    return report


def _made(index: dict[str, Any], main: dict[str, Any], data_dir: str | Path) -> dict[str, Any]:
    """Where the numbers were made: the fit's machine (from fit.json), this evaluation's, the seeds, and the data's
    origin when a generator recorded it (the demo's ``demo.json``)."""
    from hetmoe.data.demo import read_demo_record

    origin = read_demo_record(Path(data_dir))
    return {"fit": index.get("made"), "eval": machine(),
            "seeds": {"training": main.get("seed"), "data": origin.get("seed") if origin else None},
            "data_origin": origin}


def _reads_neighbourhood(model_dir: Path) -> bool:
    """Whether any variant of the fit reads item-neighbourhood features (then the pairs carry them for all)."""
    configs = [read_config(path) for path in _variants(model_dir).values()]
    return any(c.get("spec", {}).get("item_neighbourhood") or c.get("item_neighbourhood") for c in configs)


def _ordered(variants: dict[str, Any]) -> list[str]:
    singles = sorted(n for n in variants if n.startswith("single:"))
    cosines = sorted(n for n in variants if n.startswith(f"{ZERO_SHOT}:"))
    rest = [n for n in variants if n not in REPORT_ORDER and n not in singles and n not in cosines]
    return [n for n in REPORT_ORDER if n in variants] + singles + rest + cosines
