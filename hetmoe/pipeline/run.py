"""The whole pipeline in one call: dataset -> embed every expert -> index -> fit -> eval -> diagnose.

``hetmoe demo`` runs it on a freshly generated demo catalog; ``hetmoe run`` on any dataset folder. Every stage is
resumable and skips work whose inputs are unchanged, so a second run costs seconds. The dataset is validated once,
here, and the checked :class:`~hetmoe.data.dataset.Dataset` is what every stage receives.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hetmoe.errors import HetmoeError
from hetmoe.pipeline.config import FitOptions, RunConfig

if TYPE_CHECKING:
    from hetmoe.data.dataset import Dataset
    from hetmoe.experts.card import ExpertCard

RUN_CONFIG = "run.toml"  # kept in the model folder: what was run, loadable by `hetmoe run --config`


def report_split(dataset: Dataset, split: str | None = None) -> str:
    """``split`` if given, else ``test`` when the dataset has it, else ``valid`` (training then never sees valid):
    the rule ``eval``, ``fit-head`` and ``run`` share."""
    if split is not None:
        if not dataset.has_split(split):
            raise HetmoeError(f"{dataset.root}: no '{split}' judgments; choose one of the splits it has")
        return split
    for name in ("test", "valid"):
        if dataset.has_split(name):
            return name
    raise HetmoeError(f"{dataset.root}: judgments have neither a 'test' nor a 'valid' split; add one to evaluate on")


def fit_model(dataset: Dataset, store: Path, out: Path, options: FitOptions, cards: Path | None = None) -> Path:
    """Train the MoE and the baselines with ``options`` (experts and router expert resolved from ``cards``)."""
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig
    from hetmoe.store.layout import expert_dir

    options = options.with_defaults(cards)
    lexical = options.lexical_store
    experts = list(options.experts or ())
    if lexical and not expert_dir(store, lexical).is_dir() and all(expert_dir(store, e).is_dir() for e in experts):
        raise HetmoeError(f"no lexical store '{lexical}' under {store}; fit it with 'hetmoe embed -e {lexical} --data "
                          f"{dataset.root} --store {store}', or leave the lexical expert out with --lexical none")
    variants = options.variants if options.variants == "all" else [
        v for v in options.variants.split(",") if v and v != "none"]
    return fit(dataset, store, out, experts, k=options.k, seed=options.seed, variants=variants,
               eval_split=report_split(dataset, options.split), router_expert=options.router_expert,
               stack=options.stack, workers=options.train_workers,
               spec_overrides={**({"lexical_store": lexical} if lexical else {}), "extra_blocks": list(options.blocks)},
               item_neighbourhood=options.item_neighbourhood, router_features=options.router_features,
               routers=[r for r in options.routers.split(",") if r] or None, transfer=options.transfer_head,
               train_config=TrainConfig(market_power=options.market_power))


def run_pipeline(config: RunConfig) -> dict:
    """Embed, index, fit and evaluate ``config.data`` into ``config.out/{stores,model,report}``; returns the report.

    The run is recorded as ``model/run.toml`` (every option spelled out), so ``hetmoe run --config`` repeats it."""
    from hetmoe.data.validate import check_dataset
    from hetmoe.diagnose.run import diagnose

    dataset = check_dataset(config.data)
    options = config.fit.with_defaults(config.cards)
    report_split(dataset, options.split)  # refused before any work, like the cards
    timings = build_stores(dataset, config.out / "stores", options, config.cards)
    result = fit_and_evaluate(dataset, config.out / "stores", config.out, options, config.cards, timings)
    start = time.perf_counter()
    report = config.out / "report"
    geometry = diagnose(config.out / "stores", report / "diagnose", model_dir=config.out / "model")
    _link_diagnosis(report, geometry)
    timings["diagnose"] = time.perf_counter() - start
    (report / "timings.json").write_text(json.dumps(timings, indent=2))
    return result


def build_stores(dataset: Dataset, store: Path, options: FitOptions, cards: Path | None = None) -> dict[str, float]:
    """Stage one: embed and index every expert of ``options`` (and the router's) into ``store`` and fit the lexical
    expert, every card checked first; complete stores are kept. Returns the seconds each step took."""
    from hetmoe.experts.card import get_card
    from hetmoe.store.embed import embed_dataset
    from hetmoe.store.index import build_index

    options = options.with_defaults(cards)
    used = _check_arguments(list(options.experts or ()), options.router_expert or "", options.k, cards)
    lexical = options.lexical_store
    lexical_card = get_card(lexical, cards) if lexical else None  # checked before any work, like the others
    timings: dict[str, float] = {}
    for name, card in used.items():  # the router reads the cheap expert's query vectors
        start = time.perf_counter()
        embed_dataset(dataset, card, store)
        build_index(store, name)
        timings[f"embed+index:{name}"] = time.perf_counter() - start
    if lexical:
        from hetmoe.lexical.store import fit_lexical_store

        start = time.perf_counter()
        fit_lexical_store(dataset, store, name=lexical, card=lexical_card)
        timings[f"fit:{lexical}"] = time.perf_counter() - start
    return timings


def fit_and_evaluate(dataset: Dataset, store: Path, out: Path, options: FitOptions, cards: Path | None = None,
                     timings: dict[str, float] | None = None) -> dict:
    """Stage two over the stores :func:`build_stores` wrote to ``store``: fit with ``options`` into ``out/model``
    (recording the run as ``run.toml``) and evaluate every variant into ``out/report``; returns the report.
    ``timings`` gets the seconds of each step. Several fits (seeds) can share one set of stores."""
    from hetmoe.files import write_text_atomic
    from hetmoe.moe.evaluate import evaluate

    options = options.with_defaults(cards)
    model, report = out / "model", out / "report"
    timings = {} if timings is None else timings
    start = time.perf_counter()
    fit_model(dataset, store, model, options, cards)
    write_text_atomic(model / RUN_CONFIG, RunConfig(dataset.root, out, cards, options).to_toml(model))
    timings["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate(model, dataset, report_split(dataset, options.split), report, store_root=store)
    timings["eval"] = time.perf_counter() - start
    return result


def _check_arguments(experts: list[str], router_expert: str, k: int, cards: Path | None) -> dict[str, ExpertCard]:
    """Every card the run uses, checked before the first expert embeds (a late refusal would waste its hours):
    the names, their fields, backends and models, and k against the number of experts."""
    from hetmoe.experts.card import get_card
    from hetmoe.experts.registry import preflight

    if not 1 <= k <= len(experts):
        raise HetmoeError(f"--k {k}: must be between 1 and the number of experts "
                          f"({len(experts)}: {', '.join(experts)})")
    used = {}
    for name in dict.fromkeys([*experts, router_expert]):
        try:
            used[name] = get_card(name, cards)
        except HetmoeError as err:
            option = "--router-expert" if name == router_expert and name not in experts else "-e"
            raise HetmoeError(f"{option} {name}: {err}") from err
        preflight(used[name])
    return used


def _link_diagnosis(report: Path, geometry: dict) -> None:
    """Point the eval report at the geometry diagnosis, with its headline: how much rank average vs concat keep."""
    fused = geometry.get("fusion", {})
    line = "Why concatenation: see [the geometry diagnosis](diagnose/diagnose.md) of the experts' spaces"
    ranks = {kind: fused.get(kind, {}).get("effective_rank") for kind in ("average", "concatenation")}
    if all(isinstance(v, (int, float)) for v in ranks.values()):
        line += f" (effective rank of the fused item vectors: average {ranks['average']:.0f}, concatenation {ranks['concatenation']:.0f})"
    with open(report / "report.md", "a", encoding="utf-8") as md:
        md.write(f"\n## Geometry\n\n{line}.\n")
