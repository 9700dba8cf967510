"""``hetmoe fit-router``, ``hetmoe fit-head`` and ``hetmoe eval``: stage two from the command line."""
from __future__ import annotations

from pathlib import Path

import typer

from hetmoe.moe.jobs import WORKERS_HELP
from hetmoe.moe.train import MARKET_POWER


def _experts(values: list[str] | None) -> list[str] | None:
    """Repeated ``-e`` options, each possibly comma-separated, as one list (None: the cards' default set)."""
    names = [e.strip() for value in values or [] for e in value.split(",") if e.strip()]
    return names or None


def fit_head(
    data: Path = typer.Option(..., "--data", help="Dataset folder."),
    store: Path = typer.Option(Path("stores"), "--store", help="Store root written by 'hetmoe embed'."),
    out: Path = typer.Option(Path("stores/model"), "--out", help="Model folder (main model + variants/)."),
    experts: list[str] = typer.Option(None, "--expert", "-e", help="Expert to use (repeat, or comma-separate; default: the cards' default set)."),
    k: int = typer.Option(2, "--k", help="Most experts the MoE routes per query (it picks 1..k on held-out train queries); the baselines route exactly k."),
    seed: int = typer.Option(0, "--seed"),
    stack: bool = typer.Option(True, "--stack/--no-stack", help="Also train the stacked head (trees over the routed experts' statistics and the net's logit) and keep it when it wins on held-out queries."),
    variants: str = typer.Option("all", "--variants", help="Baselines to train besides moe: all, none, or a comma list (weighted,soft,concat-all,rule,single,lightgbm)."),
    eval_split: str = typer.Option(None, "--eval-split", help="Split kept out of training (default: test if present, else valid)."),
    router_expert: str = typer.Option(None, "--router-expert", help="Expert whose query vector feeds the router (default: the cards file's [defaults] router_expert)."),
    workers: int = typer.Option(0, "--workers", min=0, help=WORKERS_HELP),
    lexical: str = typer.Option("", "--lexical", help="The lexical expert's store name (fitted by 'hetmoe embed -e lexical'); its features feed every head. Default: none."),
    routers: str = typer.Option("", "--routers", help="Router kinds the MoE is chosen among on held-out queries, comma-separated (hard = learned top-k, rule = each market's k best experts). Default: all."),
    router_features: bool = typer.Option(True, "--router-features/--no-router-features", help="Let the stacked head read the router expert's columns on every query when it is one of the experts (its query vector is computed for routing anyway: a catalog search per query, no extra encoder run)."),
    item_neighbourhood: bool = typer.Option(True, "--item-neighbourhood/--no-item-neighbourhood", help="Let the stacked head and LightGBM read each expert's item neighbourhood (CSLS, shared neighbours, expansion); the tables are computed into the store once per catalog."),
    transfer: bool = typer.Option(True, "--transfer-head/--no-transfer-head", help="Give every net variant a head for markets it was not fitted on (a logistic regression over raw cosines and scale-free lexical similarities; trees learn one market's thresholds and carry badly to another)."),
    market_power: float = typer.Option(MARKET_POWER, "--market-power", min=0.0, max=1.0, help="How markets weigh in the nets' and stacked head's loss: a market's share grows as (its judged pairs) ** this. 0 = every market the same (a small market's pairs then count many times over), 1 = every pair the same (a small market rides along)."),
) -> None:
    """Train the router and concatenation head end to end (hard top-k MoE), plus the baselines eval compares."""
    from hetmoe.moe.fit import fit
    from hetmoe.moe.train import TrainConfig

    chosen: str | list[str] = variants if variants == "all" else [v for v in variants.split(",") if v and v != "none"]
    path = fit(data, store, out, _experts(experts), k=k, seed=seed, variants=chosen, eval_split=eval_split,
               router_expert=router_expert, stack=stack, workers=workers,
               spec_overrides={"lexical_store": lexical} if lexical else None, item_neighbourhood=item_neighbourhood,
               router_features=router_features, routers=[r for r in routers.split(",") if r] or None,
               transfer=transfer, train_config=TrainConfig(market_power=market_power))
    typer.echo(f"model written to {path}")


def fit_router(
    data: Path = typer.Option(..., "--data", help="Dataset folder."),
    store: Path = typer.Option(Path("stores"), "--store", help="Store root written by 'hetmoe embed'."),
    out: Path = typer.Option(Path("stores/router.json"), "--out", help="JSON file for the rule table."),
    experts: list[str] = typer.Option(None, "--expert", "-e", help="Expert to use (repeat, or comma-separate; default: the cards' default set)."),
    k: int = typer.Option(2, "--k", help="Experts per market."),
    eval_split: str = typer.Option(None, "--eval-split", help="Split kept out (default: test if present, else valid)."),
) -> None:
    """Fit the rule router alone: each market -> the k experts whose raw cosine ranks best there (training judgments)."""
    import json

    from hetmoe.moe.fit import fit_router as run

    table = run(data, store, out, _experts(experts), k=k, eval_split=eval_split)
    typer.echo(json.dumps(table, indent=1))


def eval_cmd(
    model: Path = typer.Option(..., "--model", help="Model folder written by 'hetmoe fit-head'."),
    data: Path = typer.Option(..., "--data", help="Dataset folder."),
    split: str = typer.Option("test", "--split", help="Split to report on."),
    out: Path = typer.Option(None, "--out", help="Report folder (default: MODEL/report)."),
    store: Path = typer.Option(None, "--store", help="Store root (default: the one the model was trained on)."),
) -> None:
    """Per-market AUC, macro AUC and nDCG@10 of every variant, with the MoE's CI over the best single expert."""
    from hetmoe.moe.evaluate import evaluate
    from hetmoe.moe.report import markdown

    report = evaluate(model, data, split, out or model / "report", store_root=store)
    typer.echo(markdown(report))


def register(app: typer.Typer) -> None:
    app.command("fit-router")(fit_router)
    app.command("fit-head")(fit_head)
    app.command("eval")(eval_cmd)
