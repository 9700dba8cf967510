"""``fit``: train the MoE model (hard top-k concat) and every baseline the evaluation compares it with.

Layout of ``out_dir``: the main model (``moe``) at the top level (``config.json`` + ``weights.safetensors``), each
baseline in ``variants/<name>/`` (``single:e5`` -> ``variants/single-e5``), and ``fit.json`` indexing them.
With ``distill_weight`` > 0 (the default) concat-all is trained first and serves as the teacher: every other net
variant (moe and the net baselines alike) learns from labels mixed with its logits on the training pairs; the top-2
MoE then learns to reproduce with two experts what the five-expert head learned. LightGBM is not distilled.
With stacking on, the fusion baselines (weighted, average) get stacked heads through the same path as the MoE's
(``<name>:stacked``), so that the report compares fusions head for head (:mod:`hetmoe.moe.compare`); a baseline whose
spec is an MoE candidate's (``rule``) is that candidate, saved, not trained twice. fit.json records where the fit
ran (:func:`hetmoe.provenance.machine`, the training threads and processes).
Training never sees the split that will be reported: with a ``test`` split, train on ``train`` and early-stop on
``valid``; otherwise report on ``valid`` and early-stop on a seeded 15% of train's queries.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hetmoe.errors import HetmoeError
from hetmoe.moe.artifacts import expert_identity, lexical_identity, write_json
from hetmoe.moe.features import PairSet, carve_by_query, load_pairs
from hetmoe.moe.infer import MoEModel
from hetmoe.moe.jobs import resolve_workers, run_jobs
from hetmoe.moe.rule import fit_rule_table
from hetmoe.moe.select import candidate_jobs, candidate_routers, fit_moe, held_out, variant_dir
from hetmoe.moe.spec import ModelSpec
from hetmoe.moe.stack import Stacker
from hetmoe.moe.train import TrainConfig, TrainResult, net_logits, train_net
from hetmoe.moe.transfer import TransferHead, fit_transfer
from hetmoe.moe.variants import FUSIONS, LIGHTGBM, SINGLE, TEACHER, stacked, variant_names, variant_spec
from hetmoe.provenance import machine
from hetmoe.pairs.blocks.neighbourhood import NEIGHBOURHOOD_FEATURES

log = logging.getLogger(__name__)
CARVE_FRACTION = 0.15


def load_data(data_dir: str | Path) -> Any:
    from hetmoe.data.validate import check_dataset

    return check_dataset(data_dir)


def resolve_experts(experts: Sequence[str] | None) -> list[str]:
    if experts:
        return list(dict.fromkeys(experts))
    from hetmoe.experts.card import default_experts

    return default_experts()


def plan_splits(dataset: Any, eval_split: str | None) -> tuple[str, str | None]:
    """(split reported on, split used for early stopping or None to carve from train)."""
    split = eval_split or ("test" if dataset.has_split("test") else "valid")
    if not dataset.has_split("train"):
        raise HetmoeError(f"{dataset.root}: no 'train' judgments; split the dataset (see 'hetmoe data validate')")
    stop = "valid" if split == "test" and dataset.has_split("valid") else None
    return split, stop


def training_pairs(
    dataset: Any, store_root: str | Path, experts: list[str], router_expert: str, eval_split: str | None, seed: int,
    pair_stats: str = "reference",
    lexical_store: str = "",
    neighbourhood: bool = False,
    extra_blocks: Sequence[str] = (),
) -> tuple[PairSet, PairSet, dict[str, Any]]:
    """(fit pairs, early-stopping pairs, a description of where each came from)."""
    split, stop_split = plan_splits(dataset, eval_split)
    splits = ["train"] + ([stop_split] if stop_split else [])
    pairs = load_pairs(dataset, store_root, experts, splits, router_expert, pair_stats=pair_stats,
                       lexical_store=lexical_store, neighbourhood=neighbourhood, extra_blocks=extra_blocks)
    if stop_split:
        fit_mask, stop_mask = pairs.split == "train", pairs.split == stop_split
        stop_desc = f"split '{stop_split}'"
    else:
        fit_mask, stop_mask = carve_by_query(pairs.subset(pairs.split == "train"), CARVE_FRACTION, seed)
        pairs = pairs.subset(pairs.split == "train")
        stop_desc = f"{CARVE_FRACTION:.0%} of train's queries per market (seed {seed})"
    plan = {"eval_split": split, "fit": "split 'train'" + (" minus the carved queries" if not stop_split else ""), "early_stopping": stop_desc}
    return pairs.subset(fit_mask), pairs.subset(stop_mask), plan


def _requested(variants: str | Sequence[str], experts: list[str]) -> list[str]:
    names = variant_names(experts)
    if variants == "all":
        return names
    wanted = [variants] if isinstance(variants, str) else list(variants)
    wanted = [w for w in wanted if w != "moe"]
    expanded = [n for w in wanted for n in (names if w == "all" else [f"{SINGLE}:{e}" for e in experts] if w == SINGLE else [w])]
    unknown = [w for w in expanded if w not in names]
    if unknown:
        raise HetmoeError(f"unknown variant(s) {', '.join(unknown)}; choose from moe, {', '.join(names)} (or '{SINGLE}', 'all')")
    return list(dict.fromkeys(expanded))


def fit(
    data_dir: str | Path,
    store_root: str | Path,
    out_dir: str | Path,
    experts: list[str] | None = None,
    *,
    k: int = 2,
    seed: int = 0,
    variants: str | Sequence[str] = "all",
    eval_split: str | None = None,
    router_expert: str | None = None,
    train_config: TrainConfig | None = None,
    spec_overrides: dict[str, Any] | None = None,
    stack: bool = True,
    workers: int = 0,
    item_neighbourhood: bool = True,
    router_features: bool = True,
    routers: Sequence[str] | None = None,
    transfer: bool = True,
) -> Path:
    """Train ``moe`` and the requested baselines into ``out_dir``; returns ``out_dir``.

    ``moe`` is chosen on the early-stopping queries among learned and rule routing with 1..``k`` experts and, with
    ``stack``, the net or its stacked head (:mod:`hetmoe.moe.select`); the baselines route with exactly ``k``.
    The independent trainings run side by side in ``workers`` processes (0: one per core) when each runs on one
    thread (``train_config.threads``, the default 1); the results do not depend on it. ``item_neighbourhood``: the
    stacked head (and LightGBM) also read each expert's item-neighbourhood features (:mod:`hetmoe.pairs.blocks.neighbourhood`;
    tables built into the stores on first use); ``router_features``: the stacked head reads the router expert's
    columns on every query (when it is one of ``experts``: its query vector is computed for routing anyway);
    ``routers``: the router kinds the MoE is chosen among (default: all); ``transfer``: every net variant gets a head
    for markets it never saw (:mod:`hetmoe.moe.transfer`). With ``stack``, the weighted and average baselines also
    get stacked heads, and the concatenation net with their router and k is saved as ``concat`` (``concat:stacked``)
    where the MoE chose another (see :func:`hetmoe.moe.select.fit_moe`)."""
    t0 = time.perf_counter()
    experts = resolve_experts(experts)
    if router_expert is None:
        from hetmoe.experts.card import default_router_expert

        router_expert = default_router_expert()
    if k < 1 or k > len(experts):
        raise HetmoeError(f"k={k} must be between 1 and the number of experts ({len(experts)})")
    cfg = replace(train_config or TrainConfig(), seed=seed)
    candidate_routers(routers)  # an unknown router kind fails before any work
    out = Path(out_dir)
    dataset = load_data(data_dir)
    store_root = Path(store_root).resolve()
    identity = {e: expert_identity(store_root, e) for e in dict.fromkeys([*experts, router_expert])}
    overrides = dict(spec_overrides or {})
    pair_stats, lexical_store = overrides.get("pair_stats", "reference"), overrides.get("lexical_store", "")
    # Only the stacked head reads item neighbourhoods (and LightGBM beside it): the nets' specs leave the flag off.
    neighbourhood = item_neighbourhood and stack and pair_stats == "reference"
    train, stop, plan = training_pairs(dataset, store_root, experts, router_expert, eval_split, seed, pair_stats,
                                       lexical_store, neighbourhood, overrides.get("extra_blocks", ()))
    overrides["lexical"] = list(train.lex_names)
    log.info("fitting on %d pairs, early stopping on %d pairs (%s)", len(train), len(stop), plan["early_stopping"])
    base = ModelSpec(
        experts=experts, dims=train.dims, markets=list(train.markets), k=k, router_expert=router_expert,
        router_dim=int(train.rvec.shape[1]), **overrides,
    )
    rule_table = fit_rule_table(train, k)
    common = {
        "lexical_identity": lexical_identity(store_root, lexical_store) if lexical_store else None,
        "dataset": str(Path(data_dir).resolve()),
        "store_root": str(store_root),
        "splits": plan,
        "seed": seed,
        "train_config": cfg.to_dict(),
        "feature_spec": {
            "per_expert": "L2-normalised raw vectors -> proj (rank) -> [u*v, |u-v|, cos, 2 statistics] -> inter (width) + ReLU",
            "pair_stats": pair_stats,
            "lexical": f"store '{lexical_store}': {len(train.lex_names)} features -> own layer, every query" if lexical_store else None,
            "router_input": f"market one-hot + L2-normalised '{router_expert}' query vector",
            "item_neighbourhood": f"per routed expert: {', '.join(NEIGHBOURHOOD_FEATURES)} -> the stacked head and "
            "LightGBM" if neighbourhood else None,
        },
    }
    names = _requested(variants, experts)

    def unseen_head(spec: ModelSpec) -> TransferHead | None:
        return fit_transfer(train, spec.experts, spec.k_eff) if transfer else None

    teacher: TrainResult | None = None
    teacher_logits: np.ndarray | None = None
    if cfg.distill_weight > 0:
        # The teacher (concat-all, every expert) trains first on plain labels; every other net variant, baselines
        # included, mixes its logits into the targets, so the comparisons stay like for like.
        if TEACHER in names:  # saved as that variant instead of being trained twice
            names = [TEACHER, *[n for n in names if n != TEACHER]]
        teacher_spec = variant_spec(TEACHER, base, rule_table)
        teacher = train_net(teacher_spec, train, stop, replace(cfg, distill_weight=0.0))
        teacher_logits = net_logits(teacher_spec, teacher.weights, train)
    moe_used = list(dict.fromkeys([*experts, router_expert]))
    moe_meta = {**common, "experts": {e: identity[e] for e in moe_used},
                "distilled_from": TEACHER if teacher is not None else None}

    def baseline(name: str) -> TrainResult | None:
        """Train variant ``name`` and save it (in a worker process when there are several); a net's training result."""
        target = out / variant_dir(name)
        if name == LIGHTGBM:
            from hetmoe.moe.lgbm import train_lgbm

            model = train_lgbm(train, stop, seed=seed, threads=cfg.threads)
            model.save(target, {"variant": name, **common, "expert_identity": {e: identity[e] for e in experts}})
            return None
        spec = variant_spec(name, base, rule_table)
        if teacher is not None and name == TEACHER:
            result = teacher
        else:
            result = train_net(spec, train.select_experts(spec.experts), stop.select_experts(spec.experts), cfg,
                               teacher=teacher_logits)
        MoEModel(spec, result.weights, transfer=unseen_head(spec)).save(target, net_meta(name, spec, result.metrics))
        return result

    def net_meta(name: str, spec: ModelSpec, metrics: dict[str, Any]) -> dict[str, Any]:
        used = spec.experts + ([router_expert] if spec.learned_router and router_expert not in spec.experts else [])
        distilled = TEACHER if teacher is not None and name != TEACHER else None
        return {"variant": name, **common, "experts": {e: identity[e] for e in used}, "metrics": metrics,
                "distilled_from": distilled}

    # The MoE candidates, every baseline and the folds of the fusions' stacked heads are independent once the teacher
    # exists: one batch of jobs. The fusions' stacked heads are built like the MoE's (same Stacker, same folds).
    stacker = Stacker(train, stop, cfg, teacher_logits, workers, router_features and router_expert in experts) \
        if stack else None
    fused = [name for name in FUSIONS if name in names] if stacker else []
    folds = {name: stacker.jobs(variant_spec(name, base, rule_table)) for name in fused} if stacker else {}
    candidate = candidate_jobs(base, train, stop, cfg, teacher_logits, base.k, routers)
    # A baseline whose spec is a candidate's (``rule`` is the rule-routed candidate at k) is that candidate, saved.
    reused = {name: i for name in names if name not in (LIGHTGBM, TEACHER) and not name.startswith(f"{SINGLE}:")
              for i, job in enumerate(candidate) if job[1][1] == variant_spec(name, base, rule_table)}
    own = [name for name in names if name not in reused]
    fold_jobs = [job for _, jobs in folds.values() for job in jobs]
    done = run_jobs([*candidate, *((baseline, (name,)) for name in own), *fold_jobs], workers, cfg.threads)
    candidates = done[:len(candidate)]
    selection = fit_moe(out, candidates, stop, stacker, moe_meta, transfer=unseen_head,
                        twin=f"{base.router}-k{base.k}")
    trained = dict(zip(own, done[len(candidate):len(candidate) + len(own)]))
    for name, i in reused.items():
        model, trained[name] = candidates[i].model, candidates[i].result
        model.transfer = unseen_head(model.spec)
        model.save(out / variant_dir(name), net_meta(name, model.spec, trained[name].metrics))
    results = iter(done[len(candidate) + len(own):])
    for name in fused:
        assert stacker is not None
        spec = variant_spec(name, base, rule_table)
        fold_masks, jobs = folds[name]
        model = stacker.build(MoEModel(spec, trained[name].weights), fold_masks, [next(results) for _ in jobs])
        model.transfer = unseen_head(model.spec)
        metrics = {**trained[name].metrics, "stop_auc_macro_head": held_out(model, stop)[0]}
        model.save(out / variant_dir(stacked(name)), net_meta(stacked(name), model.spec, metrics))
    index = {name: variant_dir(name) for name in [*selection["saved"], *names, *map(stacked, fused)]}
    seconds = time.perf_counter() - t0
    write_json(out / "fit.json", {"variants": index, "experts": experts, "k": k, "router_expert": router_expert,
                                  "rule_table": rule_table, "moe_selection": selection, "seconds": round(seconds, 1),
                                  "made": {**machine(), "training_threads": cfg.threads,
                                           "workers": resolve_workers(workers)}, **common})
    log.info("fit %d variants in %.1fs into %s", len(index), seconds, out)
    return out


def fit_router(data_dir: str | Path, store_root: str | Path, out_path: str | Path, experts: list[str] | None = None,
               *, k: int = 2, seed: int = 0, eval_split: str | None = None) -> dict[str, list[str]]:
    """The rule router alone (market -> k best experts on the training judgments: the table ``fit-head``'s rule
    routing gets with the same seed), written as JSON to ``out_path``."""
    experts = resolve_experts(experts)
    dataset = load_data(data_dir)
    train, _, plan = training_pairs(dataset, Path(store_root).resolve(), experts, experts[0], eval_split, seed)
    table = fit_rule_table(train, k)
    write_json(Path(out_path), {"router": "rule", "k": k, "experts": experts, "table": table, "chosen_on": plan["fit"]})
    return table

