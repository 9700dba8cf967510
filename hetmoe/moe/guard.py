"""The per-market guard: flag every market where the MoE ranks worse than rule routing or that market's best single
expert, with a bootstrap CI over the market's queries.

Why per market: a macro AUC can rise while one small market collapses (an English market with 261 queries fell from
0.79 with MiniLM alone to 0.71 under the MoE); the guard makes such a market impossible to miss in the report.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hetmoe.metrics import auc, bootstrap_delta

log = logging.getLogger(__name__)
GUARD_REPS = 500


def market_guard(scores_of: dict[str, np.ndarray], y: np.ndarray, qi: np.ndarray, markets: np.ndarray) -> dict[str, Any]:
    """{market: {"vs_rule": delta, "vs_best_single": delta, "best_single": name, "flag": ok|behind|worse}}.

    ``worse``: the 95% CI of a difference lies below 0; ``behind``: a point estimate below 0 with a CI across 0."""
    singles = [n for n in scores_of if n.startswith("single:")]
    out: dict[str, Any] = {}
    for market in np.unique(markets):
        sel = markets == market
        row: dict[str, Any] = {}
        rivals = {"vs_rule": "rule"} if "rule" in scores_of else {}
        if singles:
            best = max(singles, key=lambda n: np.nan_to_num(auc(scores_of[n][sel], y[sel]), nan=0.0))
            rivals["vs_best_single"] = best
            row["best_single"] = best
        flag = "ok"
        for key, rival in rivals.items():
            delta = bootstrap_delta(scores_of["moe"][sel], scores_of[rival][sel], y[sel], qi[sel], markets[sel], reps=GUARD_REPS)
            row[key] = {"delta_auc": delta["delta_auc"], "ci95": delta["ci95"]}
            if delta["ci95"][1] < 0:
                flag = "worse"
            elif delta["delta_auc"] < 0 and flag == "ok":
                flag = "behind"
        row["flag"] = flag
        if flag != "ok":
            log.warning("market %s: the MoE is %s %s", market, flag,
                        " and ".join(f"{rivals[k]} ({row[k]['delta_auc']:+.4f})" for k in rivals if row[k]["delta_auc"] < 0))
        out[str(market)] = row
    return out


def guard_markdown(guard: dict[str, Any]) -> list[str]:
    """The report's guard section: one row per market, flagged markets marked."""
    lines = ["", "## Per-market guard: MoE vs rule routing and the market's best single expert (95% CI)", "",
             "| market | vs rule | best single | vs best single | flag |", "|---|---|---|---|---|"]
    for market, row in guard.items():
        cells = []
        for key in ("vs_rule", "vs_best_single"):
            d = row.get(key)
            cells.append(f"{d['delta_auc']:+.4f} ({d['ci95'][0]:+.4f}..{d['ci95'][1]:+.4f})" if d else "n/a")
        mark = {"ok": "ok", "behind": "**behind**", "worse": "**WORSE**"}[row["flag"]]
        lines.append(f"| {market} | {cells[0]} | {row.get('best_single', 'n/a')} | {cells[1]} | {mark} |")
    return lines
