"""``hetmoe fit-router``, ``hetmoe fit-head`` and ``hetmoe eval``: stage two from the command line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hetmoe.commands.options import (CARDS, DATA, EXPERTS, FIT, FIT_OPTIONS, MODEL, MODEL_STORE, SEED, SPLIT, STORE,
                                     example, fit_options, with_options)

ROUTER_FILE = "router.json"


@with_options(FIT_OPTIONS)
def fit_head(
    data: Path = DATA,
    store: Path = STORE,
    out: Path = typer.Option(Path("stores/model"), "--out", help="Model folder (main model + variants/)."),
    cards: Path = CARDS,
    **options: Any,
) -> None:
    """Train the router and concatenation head end to end (hard top-k MoE), plus the baselines eval compares."""
    from hetmoe.data.validate import check_dataset
    from hetmoe.pipeline.run import fit_model

    path = fit_model(check_dataset(data), store, out, fit_options(options), cards)
    typer.echo(f"model written to {path}")


def fit_router(
    data: Path = DATA,
    store: Path = STORE,
    out: Path = typer.Option(Path("stores/router"), "--out", help=f"Folder for the rule table ({ROUTER_FILE})."),
    cards: Path = CARDS,
    experts: list[str] = EXPERTS,
    k: int = typer.Option(FIT.k, "--k", help="Experts per market."),
    split: str = SPLIT,
    seed: int = SEED,
) -> None:
    """Fit the rule router alone: each market -> the k experts whose raw cosine ranks best there (training judgments)."""
    import json

    from hetmoe.data.validate import check_dataset
    from hetmoe.experts.card import default_experts
    from hetmoe.moe.fit import fit_router as run
    from hetmoe.pipeline.run import report_split

    dataset = check_dataset(data)
    table = run(dataset, store, out / ROUTER_FILE, experts or default_experts(cards), k=k, seed=seed,
                eval_split=report_split(dataset, split))
    typer.echo(json.dumps(table, indent=1))


def eval_cmd(
    model: Path = MODEL,
    data: Path = DATA,
    split: str = SPLIT,
    out: Path = typer.Option(None, "--out", help="Report folder (default: MODEL/report)."),
    store: Path = MODEL_STORE,
) -> None:
    """Per-market AUC, MRR, Recall@k and nDCG@k of every variant and each expert's zero-shot cosine, with the MoE's
    CI over the best single expert."""
    from hetmoe.data.validate import check_dataset
    from hetmoe.moe.evaluate import evaluate
    from hetmoe.moe.report import markdown
    from hetmoe.pipeline.run import report_split

    dataset = check_dataset(data)
    report = evaluate(model, dataset, report_split(dataset, split), out or model / "report", store_root=store)
    typer.echo(markdown(report))


def register(app: typer.Typer) -> None:
    app.command("fit-router", epilog=example("hetmoe fit-router --data data/D --store stores -e minilm,e5 --k 1"))(
        fit_router)
    app.command("fit-head", epilog=example(
        "hetmoe fit-head --data data/D --store stores --out stores/model -e minilm,e5,static --k 2",
        "hetmoe fit-head --data data/D --lexical none --no-stack --variants none"))(fit_head)
    app.command("eval", epilog=example("hetmoe eval --model stores/model --data data/D"))(eval_cmd)
