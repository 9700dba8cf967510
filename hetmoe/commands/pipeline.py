"""``hetmoe run`` and ``hetmoe demo``: thin wrappers over :func:`hetmoe.pipeline.run.run_pipeline`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from hetmoe.commands.options import (
    CARDS, FIT_OPTIONS, SEED, TRAIN_WORKERS, example, experts_option, fit_options, with_options,
)
from hetmoe.data.demo_vocab import ITEMS_PER_MARKET, QUERIES_PER_MARKET
from hetmoe.errors import HetmoeError
from hetmoe.pipeline.config import FitOptions, RunConfig
from hetmoe.pipeline.run import run_pipeline

DEMO_EXPERTS = experts_option("the cards' demo_experts (minilm, use, static, wordllama)")
CONFIG_HELP = ("TOML run config: keys are the options' long names without dashes (experts = [...] for -e); options "
               "given on the command line win. Every run records its full config as OUT/model/run.toml.")


def _given(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The options the command line set explicitly (they override the config file)."""
    return {name: value for name, value in values.items()
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") != "DEFAULT"}


def run_config(ctx: typer.Context, config: Path | None, values: dict[str, Any]) -> RunConfig:
    """The run: defaults, then the config file's keys, then the command line's explicit options."""
    chosen = {**(RunConfig.file_values(config) if config is not None else {}), **_given(ctx, values)}
    for required in ("data", "out"):
        if chosen.get(required) is None:
            raise HetmoeError(f"--{required} is required (on the command line or in --config)")
    fit = fit_options({p.name: chosen[p.name] for p in FIT_OPTIONS if p.name in chosen})
    return RunConfig(Path(chosen["data"]), Path(chosen["out"]), chosen.get("cards"), fit)


def register(app: typer.Typer) -> None:
    @app.command("run", epilog=example("hetmoe run --data data/D --out runs/D -e minilm,e5,static --k 2",
                                       "hetmoe run --config runs/D/model/run.toml --seed 1 --out runs/D-seed1"))
    @with_options(FIT_OPTIONS)
    def run_cmd(
        ctx: typer.Context,
        data: Path = typer.Option(None, "--data", help="Dataset folder (items/queries/judgments Parquet)."),
        out: Path = typer.Option(None, "--out", help="Writes OUT/stores, OUT/model (with run.toml) and OUT/report."),
        config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
        cards: Path = CARDS,
        **options: Any,
    ) -> None:
        """Run the whole pipeline on a dataset folder: embed, index, fit, evaluate (on test, else valid), diagnose.
        Takes every fit-head option."""
        chosen = run_config(ctx, config, {"data": data, "out": out, "cards": cards, **options})
        _print_summary(run_pipeline(chosen), chosen.out / "report")

    @app.command("demo", epilog=example("hetmoe demo --out stores/demo"))
    def demo_cmd(
        out: Path = typer.Option(Path("stores/demo"), "--out", help="Writes OUT/data, OUT/stores, OUT/model, OUT/report."),
        items_per_market: int = typer.Option(ITEMS_PER_MARKET, help="Demo catalog items per market."),
        queries_per_market: int = typer.Option(QUERIES_PER_MARKET, help="Demo queries per market."),
        seed: int = SEED,
        experts: list[str] = DEMO_EXPERTS,
        train_workers: int = TRAIN_WORKERS,
    ) -> None:
        """Generate the multilingual demo catalog and run the whole pipeline on it (about 3 minutes on 2 cores)."""
        from hetmoe.data.demo import generate_demo
        from hetmoe.experts.card import default_experts

        data = out / "data"
        generate_demo(data, items_per_market=items_per_market, queries_per_market=queries_per_market, seed=seed)
        chosen = tuple(experts or default_experts(key="demo_experts"))
        config = RunConfig(data, out, None, FitOptions(experts=chosen, seed=seed, train_workers=train_workers))
        _print_summary(run_pipeline(config), out / "report")


def _print_summary(result: dict, report_dir: Path) -> None:
    """Print the per-variant table (macro AUC first: pooled AUC rewards learning each market's base rate)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['dataset']} — split {result['split']}")
    for column in ("variant", "AUC macro", "AUC pooled", "MRR", "nDCG@10", "experts/query"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, v in result["variants"].items():
        table.add_row(name, f"{v['auc_macro']:.4f}", f"{v['auc']:.4f}", f"{v['mrr']:.4f}", f"{v['ndcg10']:.4f}",
                      f"{v['experts_per_query']:.2f}")
    console = Console()
    console.print(table)
    delta = result.get("moe_vs_best_single")  # absent when no single-expert baseline was trained (--variants)
    if delta:
        console.print(
            f"moe vs best single: ΔAUC macro {delta['delta_auc_macro']:+.4f} (95% CI {delta['ci95_macro'][0]:+.4f}..{delta['ci95_macro'][1]:+.4f}), "
            f"pooled {delta['delta_auc']:+.4f} (95% CI {delta['ci95'][0]:+.4f}..{delta['ci95'][1]:+.4f})"
        )
    for head, row in result.get("fusions", {}).items():  # like against like: each head with its own kind
        for rival, d in row["vs"].items():
            console.print(f"{row['concat']} vs {rival} ({head} heads, {row['router']}): ΔAUC macro "
                          f"{d['delta_auc_macro']:+.4f} (95% CI {d['ci95_macro'][0]:+.4f}..{d['ci95_macro'][1]:+.4f})")
    gain = result.get("stacked_gain")
    if gain:
        console.print(f"stacked head's own gain ({gain['stacked']} against its own net): ΔAUC macro "
                      f"{gain['delta_auc_macro']:+.4f} (95% CI {gain['ci95_macro'][0]:+.4f}..{gain['ci95_macro'][1]:+.4f})")
    console.print(f"report: {report_dir / 'report.md'}")
