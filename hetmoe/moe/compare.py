"""The report's fusion comparisons, like against like: each fusion against concatenation under the same head, router
and k, and the stacked head's own gain on a line of its own.

Why: the MoE is a concatenation net plus, when it wins on the held-out queries, a stacked head (trees over the
routed experts' statistics, the lexical features, item neighbourhoods and the net's logit). Put against the weighted
*net*, its margin mixed the stacked head's gain into the fusion's; on four real held-out markets the nets were level
(concat 0.845, weighted 0.848, average 0.850) while the stacked head added 2.5 pp. So ``fit`` trains the fusion
baselines' stacked heads through the same path as the MoE's (:class:`hetmoe.moe.stack.Stacker`), saves the
concatenation net of their router and k when the MoE chose another (``concat``), and this module compares net with
net and stacked with stacked. The method's claim, that concatenation beats averaging the experts' *embeddings*,
keeps its column with the ``average`` variant.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from hetmoe.metrics import bootstrap_delta
from hetmoe.moe.variants import FUSIONS, STACKED, stacked

HEADS = ("net", STACKED)
WHAT = {"weighted": "gate-weighted sum of the routed experts' features",
        "average": "gate-weighted average of the routed experts' projected embeddings"}


def route_of(config: dict[str, Any]) -> str:
    """A net variant's router and k as the MoE candidates are named (``hard-k2``, ``rule-k1``, ``none-k5``)."""
    if config.get("router"):
        return str(config["router"])
    spec = config.get("spec", {})
    return f"{spec.get('router', '?')}-k{spec.get('k', '?')}"


def moe_heads(selection: dict[str, Any], names: set[str]) -> dict[str, str]:
    """{head: the MoE's variant with that head}: ``moe`` for the winning head, ``moe:<head>`` for the other."""
    winner = selection.get("head", "net")
    return {head: "moe" if head == winner else f"moe:{head}" for head in HEADS
            if ("moe" if head == winner else f"moe:{head}") in names}


def fusion_comparisons(selection: dict[str, Any], configs: dict[str, dict[str, Any]],
                       scores_of: dict[str, np.ndarray], pairs: Any,
                       stacked_net: np.ndarray | None = None) -> dict[str, Any]:
    """``fusions`` (per head: the concatenation model, its router and each fusion's delta), ``stacked_gain`` (the
    MoE's stacked head against ``stacked_net``, the scores of the same model through its net head alone) and
    ``moe_vs_fusions`` (the MoE as chosen against each fusion with the MoE's head), each delta with 95% bootstrap
    CIs over queries within markets."""

    done: dict[tuple[str, str], dict[str, Any]] = {}

    def delta(a: str, b: str) -> dict[str, Any]:  # each pair once: the MoE is often the concatenation model too
        if (a, b) not in done:
            done[a, b] = bootstrap_delta(scores_of[a], scores_of[b], pairs.y, pairs.qi, pairs.market_names)
        return done[a, b]

    own = moe_heads(selection, set(scores_of))
    twins = {**own, **selection.get("fusion_twin", {})}
    out: dict[str, Any] = {"fusions": {}}
    for head in HEADS:
        concat = twins.get(head)
        rivals = [name if head == "net" else stacked(name) for name in FUSIONS]
        rivals = [r for r in rivals if r in scores_of]
        if concat not in scores_of or not rivals:
            continue
        out["fusions"][head] = {"concat": concat, "router": route_of(configs[concat]),
                                "routers": {r: route_of(configs[r]) for r in rivals},
                                "vs": {r: delta(concat, r) for r in rivals}}
    if STACKED in own and stacked_net is not None:  # same router, same net: only the head differs
        out["stacked_gain"] = {"stacked": own[STACKED], "router": route_of(configs[own[STACKED]]),
                               **bootstrap_delta(scores_of[own[STACKED]], stacked_net, pairs.y, pairs.qi,
                                                 pairs.market_names)}
    head = selection.get("head", "net")
    rivals = [name if head == "net" else stacked(name) for name in FUSIONS]
    out["moe_vs_fusions"] = {"head": head, "router": route_of(configs["moe"]),
                             "vs": {r: delta("moe", r) for r in rivals if r in scores_of}}
    return out


def _cell(d: dict[str, Any]) -> str:
    return f"{d['delta_auc_macro']:+.4f} ({d['ci95_macro'][0]:+.4f}..{d['ci95_macro'][1]:+.4f})"


def comparison_markdown(report: dict[str, Any]) -> list[str]:
    """The report's section: one row per head (macro AUC of each fusion, deltas with CIs), then the stacked head's
    gain, then the MoE as chosen where it is not the concatenation model of the table."""
    fusions, variants = report.get("fusions", {}), report["variants"]
    if not fusions:
        return []
    intro = ("Each fusion against concatenation under the same router, k, teacher, seed and head: `weighted` is a "
             f"{WHAT['weighted']}, `average` a {WHAT['average']} (the collapse the method is built against).")
    lines = ["", "## Fusions, head for head (macro AUC)", "", intro, "",
             "| head | router | concat | weighted | average | concat − weighted (95% CI) | concat − average (95% CI) |",
             "|---|---|---|---|---|---|---|"]
    for head, row in fusions.items():
        cells = []
        for name in FUSIONS:
            rival = name if head == "net" else stacked(name)
            cells.append((variants[rival]["auc_macro"], row["vs"].get(rival)))
        lines.append(f"| {head} | {row['router']} | `{row['concat']}` {variants[row['concat']]['auc_macro']:.4f} | "
                     + " | ".join(f"{auc:.4f}" for auc, _ in cells) + " | "
                     + " | ".join(_cell(d) if d else "n/a" for _, d in cells) + " |")
    gain = report.get("stacked_gain")
    if gain:
        lines += ["", (f"**Stacked head's own gain** (`{gain['stacked']}` against its own net, {gain['router']} "
                       f"routing): macro AUC {_cell(gain)}.")]
    chosen = report.get("moe_vs_fusions", {})
    twin = fusions.get(chosen.get("head"), {}).get("concat")
    if chosen.get("vs") and twin != "moe":
        against = "; ".join(f"vs `{r}` {_cell(d)}" for r, d in chosen["vs"].items())
        lines += ["", f"The MoE as chosen ({chosen['router']}, {chosen['head']} head) against the fusions with the same head: {against}."]
    return lines
