"""Options several commands share, each defined once: a name means the same thing, with the same default, in every
command that has it (``tests/test_cli_consistency.py`` checks the whole app), plus the help conventions (flags read
as flags, an example under every command)."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from hetmoe.moe.jobs import WORKERS_HELP
from hetmoe.pipeline.config import FitOptions
from hetmoe.store.layout import DEFAULT_STORE

F = TypeVar("F", bound=Callable[..., Any])
FIT = FitOptions()  # the fit options' defaults, from the record both fit-head and run build


def split_names(values: list[str] | None) -> list[str] | None:
    """Repeated ``-e`` options, each possibly comma-separated, as one list (None when none was given)."""
    names = [name.strip() for value in values or [] for name in value.split(",") if name.strip()]
    return list(dict.fromkeys(names)) or None


def experts_option(default: str = "the cards' default set") -> Any:
    """``-e``: the same option everywhere; only what no ``-e`` means is the command's own."""
    return typer.Option(None, "--expert", "-e", callback=split_names,
                        help=f"Experts (repeat -e, or comma-separate: -e minilm,e5); default: {default}.")


EXPERTS = experts_option()
DATA = typer.Option(..., "--data", help="Dataset folder (items/queries/judgments Parquet).")
STORE = typer.Option(DEFAULT_STORE, "--store", help="Store root: STORE/<expert>/ holds an expert's vectors and index.")
MODEL_STORE = typer.Option(None, "--store", help="Store root (default: the stores the model was fitted on, as "
                           "recorded relative to the model folder).")
MODEL_DATA = typer.Option(None, "--data", help="Dataset folder (default: the dataset the model was fitted on, as "
                          "recorded relative to the model folder).")
MODEL = typer.Option(..., "--model", "-m", help="Model folder written by 'hetmoe fit-head' or 'hetmoe run' (OUT/model).")
CARDS = typer.Option(None, "--cards", help="Your expert cards TOML: adds cards to the packaged ones (a card or "
                     "[defaults] key of the same name replaces the packaged one); default: $HETMOE_CARDS if set.")
SPLIT = typer.Option(None, "--split", help="Split to report on (default: test if the dataset has it, else valid); "
                     "fit-head and run keep it out of training.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")
SEED = typer.Option(0, "--seed", help="Random seed; the same seed gives the same result.")
TRAIN_WORKERS = typer.Option(FIT.train_workers, "--train-workers", min=0, help=WORKERS_HELP)
ENGINE = typer.Option("local", "--engine", help="local: this process | ray: a Ray actor pool, one model per actor.")
ADDRESS = typer.Option(None, "--address", help="--engine ray: Ray cluster to join (e.g. auto, ray://HEAD:10001); "
                       "default: start a local Ray.")
RAY_WORKERS = typer.Option(None, "--ray-workers", help="--engine ray: actors (default: the cluster's CPUs / "
                           "--cpus-per-worker, or GPUs / --gpus-per-worker).")
GPUS_PER_WORKER = typer.Option(0.0, "--gpus-per-worker", help="--engine ray: GPUs each actor reserves (0: CPU).")
CPUS_PER_WORKER = typer.Option(1.0, "--cpus-per-worker", help="--engine ray: CPUs each actor reserves (and its "
                               "encoders' threads).")


def keyword_param(name: str, annotation: Any, option: Any) -> inspect.Parameter:
    """One command option as a keyword-only parameter, for option sets shared by commands (see :func:`with_options`)."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)


# Every fit option, once: `fit-head` and `run` take the same set with the same defaults (FitOptions').
FIT_OPTIONS: list[inspect.Parameter] = [
    keyword_param("experts", list[str], EXPERTS),
    keyword_param("k", int, typer.Option(FIT.k, "--k", help="Most experts the MoE routes per query (it picks 1..k on "
                                  "held-out train queries); the baselines route exactly k.")),
    keyword_param("seed", int, SEED),
    keyword_param("split", str, SPLIT),
    keyword_param("router_expert", str, typer.Option(FIT.router_expert, "--router-expert", help="Cheap expert whose query "
                                              "vector feeds the router (default: the cards' \\[defaults] router_expert).")),
    keyword_param("lexical", str, typer.Option(FIT.lexical, "--lexical", help="Lexical expert card fed to every head (BM25, "
                                        "char n-grams, token overlap; fitted by 'hetmoe embed -e lexical'); "
                                        "'none' leaves it out.")),
    keyword_param("train_workers", int, TRAIN_WORKERS),
    keyword_param("stack", bool, typer.Option(FIT.stack, "--stack/--no-stack", help="Also train the stacked head (trees over "
                                       "the routed experts' statistics and the net's logit); kept when it wins on "
                                       "held-out queries.")),
    keyword_param("variants", str, typer.Option(FIT.variants, "--variants", help="Baselines to train besides moe: all, none, "
                                         "or a comma list (weighted,soft,concat-all,rule,single,lightgbm).")),
    keyword_param("routers", str, typer.Option(FIT.routers, "--routers", help="Router kinds the MoE is chosen among on "
                                        "held-out queries, comma-separated (hard = learned top-k, rule = each "
                                        "market's k best experts). Default: all.")),
    keyword_param("router_features", bool, typer.Option(
        FIT.router_features, "--router-features/--no-router-features", help="Let the stacked head read the router "
        "expert's columns on every query when it is one of the experts (no extra encoder run).")),
    keyword_param("item_neighbourhood", bool, typer.Option(
        FIT.item_neighbourhood, "--item-neighbourhood/--no-item-neighbourhood", help="Let the stacked head and "
        "LightGBM read each expert's item neighbourhood (CSLS, shared neighbours, expansion), computed once per "
        "catalog into the store.")),
    keyword_param("transfer_head", bool, typer.Option(
        FIT.transfer_head, "--transfer-head/--no-transfer-head", help="Give every net variant a head for markets it "
        "was not fitted on (a logistic regression over raw cosines and scale-free lexical similarities).")),
    keyword_param("market_power", float, typer.Option(
        FIT.market_power, "--market-power", min=0.0, max=1.0, help="How markets weigh in the loss: a market's share "
        "grows as (its judged pairs) ** this; 0 = every market the same, 1 = every pair the same.")),
    keyword_param("blocks", list[str], typer.Option(
        None, "--block", help="Another feature block for the stacked head and LightGBM, by name (repeat, or "
        "comma-separate; e.g. reference_tail); each module of hetmoe/pairs/blocks is one.")),
]


def fit_options(values: dict[str, Any]) -> FitOptions:
    """The FitOptions record from a command's parsed fit options."""
    given = {p.name: values[p.name] for p in FIT_OPTIONS if p.name in values}
    if given.get("experts") is not None:
        given["experts"] = tuple(given["experts"])
    given["blocks"] = tuple(b.strip() for v in given.get("blocks") or () for b in v.split(",") if b.strip())
    return FitOptions(**given)


def with_options(params: list[inspect.Parameter]) -> Callable[[F], F]:
    """Append ``params`` to the decorated command's options (it receives them as keyword arguments)."""

    def wrap(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        func.__signature__ = signature.replace(parameters=[*own, *params])  # type: ignore[attr-defined]
        return func

    return wrap


def example(*commands: str) -> str:
    """The epilog every command's --help ends with: one or more commands to copy."""
    return "Example:\n\n" + "\n\n".join(f"  {c}" for c in commands)


def _flags_read_as_flags(command: Any, ctx: Any) -> None:
    """A flag takes no value, so its help shows none (typer would print <bool>, as if --json took true/false)."""
    for param in [*command.params, command.get_help_option(ctx)]:
        if getattr(param, "is_flag", False):
            param.metavar = ""


class HetmoeGroup(TyperGroup):
    """The app's command groups: their commands' flags read as flags in --help."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _flags_read_as_flags(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _flags_read_as_flags(self, ctx)
        super().format_help(ctx, formatter)


def group(help_text: str) -> typer.Typer:
    """A sub-command group (``hetmoe data``, ``hetmoe experts``) with the app's help conventions."""
    return typer.Typer(help=help_text, cls=HetmoeGroup, no_args_is_help=True)
