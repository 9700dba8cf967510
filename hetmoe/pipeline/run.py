"""The whole pipeline in one call: dataset -> embed every expert -> index -> fit -> eval -> diagnose.

``hetmoe demo`` runs it on a freshly generated demo catalog; ``hetmoe run`` on any dataset folder. Every stage is
resumable and skips work whose inputs are unchanged, so a second run costs seconds.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hetmoe.errors import HetmoeError

if TYPE_CHECKING:
    from hetmoe.data.dataset import Dataset
    from hetmoe.experts.card import ExpertCard


def report_split(dataset: Dataset) -> str:
    """Report on ``test`` when the dataset has it, else on ``valid`` (training then never sees valid)."""
    for split in ("test", "valid"):
        if dataset.has_split(split):
            return split
    raise HetmoeError(f"{dataset.root}: judgments have neither a 'test' nor a 'valid' split; add one to evaluate on")


def run_pipeline(
    data_dir: Path,
    out: Path,
    experts: list[str] | None = None,
    cards: Path | None = None,
    k: int = 2,
    seed: int = 0,
    router_expert: str | None = None,
    lexical: str | None = "lexical",
    workers: int = 0,
) -> dict:
    """Embed, index, fit and evaluate ``data_dir`` into ``out/{stores,model,report}``; returns the report dict.

    ``router_expert``: default the cards file's ``[defaults] router_expert``; ``lexical``: the lexical expert's card,
    fitted on the catalog and fed to every head (None: embeddings only); ``workers``: training processes (0: one per core)."""
    from hetmoe.data.validate import check_dataset
    from hetmoe.diagnose.run import diagnose
    from hetmoe.experts.card import default_experts, default_router_expert, get_card
    from hetmoe.moe.evaluate import evaluate
    from hetmoe.moe.fit import fit
    from hetmoe.store.embed import embed_dataset
    from hetmoe.store.index import build_index

    dataset = check_dataset(data_dir)
    experts = list(dict.fromkeys(experts or default_experts(cards)))
    router_expert = router_expert or default_router_expert(cards)
    used = _check_arguments(experts, router_expert, k, cards)
    lexical_card = get_card(lexical, cards) if lexical else None  # checked before any work, like the others
    store, model, report = out / "stores", out / "model", out / "report"
    timings: dict[str, float] = {}
    for name, card in used.items():  # the router reads the cheap expert's query vectors
        start = time.perf_counter()
        embed_dataset(data_dir, card, store)
        build_index(store, name)
        timings[f"embed+index:{name}"] = time.perf_counter() - start
    if lexical:
        from hetmoe.lexical.store import fit_lexical_store

        start = time.perf_counter()
        fit_lexical_store(data_dir, store, name=lexical, card=lexical_card)
        timings[f"fit:{lexical}"] = time.perf_counter() - start
    split = report_split(dataset)
    start = time.perf_counter()
    fit(data_dir, store, model, experts, k=k, seed=seed, eval_split=split, router_expert=router_expert,
        spec_overrides={"lexical_store": lexical} if lexical else None, workers=workers)
    timings["fit"] = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate(model, data_dir, split, report, store_root=store)
    geometry = diagnose(store, report / "diagnose", model_dir=model)
    _link_diagnosis(report, geometry)
    timings["eval+diagnose"] = time.perf_counter() - start
    (report / "timings.json").write_text(json.dumps(timings, indent=2))
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
