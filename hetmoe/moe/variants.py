"""The report's variants: the baselines ``fit`` trains beside the MoE and ``eval`` compares with it, in one table.

Why one table: a variant's name, how its spec derives from the MoE's and where the report lists it used to be
spelled out in fit, eval and the CLI separately. ``single:<expert>`` variants (one per expert) stand where
``single`` does; ``lightgbm`` is not a net (no spec).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from hetmoe.errors import HetmoeError
from hetmoe.moe.spec import ModelSpec

# The soft variant drops an expert whose gate weight is under half of a uniform share (1 / n_experts): a clearly
# unwanted expert is not encoded, while a gate near uniform (an unsure router) keeps every expert.
SOFT_SHARE = 0.5
SINGLE = "single"
TEACHER = "concat-all"  # every expert, gate 1: the net the others are distilled from
LIGHTGBM = "lightgbm"
Derive = Callable[[ModelSpec, dict[str, list[str]]], ModelSpec]


@dataclass(frozen=True)
class Variant:
    name: str
    derive: Derive | None  # the variant's spec from the MoE's spec and the fitted rule table; None: not a net
    report_rank: int  # position in the report's tables, after ``moe`` (singles come after every ranked variant)


def _single(base: ModelSpec, expert: str) -> ModelSpec:
    i = base.experts.index(expert)
    return replace(base, experts=[expert], dims=[base.dims[i]], router="none", k=1)


# Training order (fit trains them in this order; the concat-all teacher first when it distils).
VARIANTS: tuple[Variant, ...] = (
    Variant("weighted", lambda base, table: replace(base, fusion="weighted"), 1),
    Variant("average", lambda base, table: replace(base, fusion="average"), 2),
    Variant("soft", lambda base, table: replace(base, router="soft", soft_threshold=SOFT_SHARE / base.n_experts), 3),
    Variant(TEACHER, lambda base, table: replace(base, router="none"), 5),
    Variant("rule", lambda base, table: replace(base, router="rule", rule_table=table), 4),
    Variant(SINGLE, None, 7),
    Variant(LIGHTGBM, None, 6),
)
BY_NAME = {v.name: v for v in VARIANTS}
# The baselines that differ from the MoE's net by their fusion alone (same router, k, teacher and seed). With a stacked
# MoE each also gets a stacked head through the same path (``<name>:stacked``), so fusions compare head for head, and
# the MoE's concatenation net under their router and k is saved as ``concat`` (``concat:stacked``) when the MoE chose
# another router or k.
FUSIONS = ("weighted", "average")
STACKED = "stacked"
TWIN = "concat"


def stacked(name: str) -> str:
    """The name of a variant's stacked head: ``weighted`` -> ``weighted:stacked``."""
    return f"{name}:{STACKED}"


_HEADS = ("moe:net", stacked("moe"), TWIN, stacked(TWIN))
_RANKED = [v.name for v in sorted(VARIANTS, key=lambda v: v.report_rank) if v.name != SINGLE]
REPORT_ORDER: tuple[str, ...] = ("moe", *_HEADS, *(n for name in _RANKED for n in (
    [name, stacked(name)] if name in FUSIONS else [name])))


def variant_names(experts: list[str]) -> list[str]:
    """Every baseline in training order, ``single`` expanded to one ``single:<expert>`` per expert."""
    return [n for v in VARIANTS for n in ([f"{SINGLE}:{e}" for e in experts] if v.name == SINGLE else [v.name])]


def variant_spec(name: str, base: ModelSpec, rule_table: dict[str, list[str]]) -> ModelSpec:
    """The ModelSpec of a named net variant (``moe``: the base itself), derived from the main model's spec."""
    if name == "moe":
        return base
    if name.startswith(f"{SINGLE}:"):
        return _single(base, name.split(":", 1)[1])
    variant = BY_NAME.get(name)
    if variant is None or variant.derive is None:
        raise HetmoeError(f"unknown variant '{name}'")
    return variant.derive(base, rule_table)
