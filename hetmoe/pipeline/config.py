"""What a fit is asked to do, as one validated record: the options ``hetmoe fit-head`` and ``hetmoe run`` share, and
the TOML run config (``hetmoe run --config run.toml``) that ``run`` records next to the model it writes.

Why one record: both commands fit the same way, so an option that exists in one and not the other, or has another
default there, is a bug this module makes impossible. The TOML keys are the options' long names without the dashes
(``router-expert = "static"``, ``experts = ["minilm", "e5"]`` for ``-e``); paths in the file are relative to it.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hetmoe.errors import HetmoeError
from hetmoe.moe.train import MARKET_POWER

NO_LEXICAL = "none"


@dataclass(frozen=True)
class FitOptions:
    """The fit options of ``fit-head`` and ``run``; ``None`` means the cards' default (experts, router expert) or
    the dataset's (split: test if present, else valid)."""

    experts: tuple[str, ...] | None = None
    k: int = 2
    seed: int = 0
    split: str | None = None
    router_expert: str | None = None
    lexical: str = "lexical"
    train_workers: int = 0
    stack: bool = True
    variants: str = "all"
    routers: str = ""
    router_features: bool = True
    item_neighbourhood: bool = True
    transfer_head: bool = True
    market_power: float = MARKET_POWER
    blocks: tuple[str, ...] = ()  # more feature blocks the tree heads read (hetmoe.pairs.blocks), by name

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _KINDS[f.name])
        if not 0.0 <= self.market_power <= 1.0:
            raise HetmoeError(f"market-power = {self.market_power}: must be between 0 and 1")

    @property
    def lexical_store(self) -> str | None:
        """The lexical expert's store, or None when the heads go without it."""
        return None if self.lexical in (NO_LEXICAL, "") else self.lexical

    def with_defaults(self, cards: Path | None) -> FitOptions:
        """The experts and router expert spelled out from the cards (what a run record keeps)."""
        from hetmoe.experts.card import default_experts, default_router_expert

        return replace(self, experts=tuple(dict.fromkeys(self.experts or default_experts(cards))),
                       router_expert=self.router_expert or default_router_expert(cards))


_NAMES, _INT, _OPT_STR, _BOOL = ((tuple, type(None)), "a list of names"), ((int,), "an integer"), \
    ((str, type(None)), "a string"), ((bool,), "true or false")
_KINDS: dict[str, tuple[tuple[type, ...], str]] = {
    "experts": _NAMES, "k": _INT, "seed": _INT, "split": _OPT_STR, "router_expert": _OPT_STR,
    "lexical": ((str,), "a string"), "train_workers": _INT, "stack": _BOOL, "variants": ((str,), "a string"),
    "routers": ((str,), "a string"), "router_features": _BOOL, "item_neighbourhood": _BOOL, "transfer_head": _BOOL,
    "market_power": ((float, int), "a number"), "blocks": ((tuple,), "a list of names"),
}


def _check_type(name: str, value: Any, kind: tuple[tuple[type, ...], str]) -> None:
    """Values from a TOML file or from code have the option's type (true is no integer, "2" is no number)."""
    types, wanted = kind
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    if not ok or (isinstance(value, tuple) and not all(isinstance(v, str) for v in value)):
        raise HetmoeError(f"{name.replace('_', '-')} must be {wanted}, got {value!r}")


@dataclass(frozen=True)
class RunConfig:
    """One ``hetmoe run``: the dataset, the output folder, the user's cards and the fit options."""

    data: Path
    out: Path
    cards: Path | None = None
    fit: FitOptions = field(default_factory=FitOptions)

    @classmethod
    def file_values(cls, path: Path) -> dict[str, Any]:
        """The keys a run config file sets, checked and converted (paths made relative to the file's folder)."""
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise HetmoeError(f"--config {path}: no such file") from err
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise HetmoeError(f"--config {path}: not valid TOML ({err}); fix the syntax") from err
        allowed = {"data", "out", "cards", *(f.name.replace("_", "-") for f in fields(FitOptions))}
        unknown = sorted(set(doc) - allowed)
        if unknown:
            raise HetmoeError(f"--config {path}: unknown key(s) {unknown}; the keys are {sorted(allowed)}")
        values: dict[str, Any] = {}
        for key, value in doc.items():
            name = key.replace("-", "_")
            if name in ("data", "out", "cards"):
                if not isinstance(value, str) or not value:
                    raise HetmoeError(f"--config {path}: {key} must be a path (a string)")
                values[name] = Path(path).parent / Path(value).expanduser()
            else:
                values[name] = tuple(value) if isinstance(value, list) else value
        try:
            FitOptions(**{k: v for k, v in values.items() if k not in ("data", "out", "cards")})
        except (HetmoeError, TypeError) as err:
            raise HetmoeError(f"--config {path}: {err}") from err
        return values

    def to_toml(self, folder: Path) -> str:
        """The run as a config file kept in ``folder`` (paths relative to it), so ``hetmoe run --config`` repeats it."""
        from hetmoe.experts.cardfile import toml_value

        def rel(p: Path) -> str:
            return os.path.relpath(Path(p).resolve(), Path(folder).resolve())

        lines = ["# hetmoe run: what was run (hetmoe run --config <this file> repeats it)",
                 f"data = {toml_value(rel(self.data))}", f"out = {toml_value(rel(self.out))}"]
        if self.cards is not None:
            lines.append(f"cards = {toml_value(rel(self.cards))}")
        for key, value in asdict(self.fit).items():
            if value is not None:
                lines.append(f"{key.replace('_', '-')} = {toml_value(list(value) if isinstance(value, tuple) else value)}")
        return "\n".join(lines) + "\n"
