"""Writing expert cards back to TOML, so a card made by a command (``hetmoe tune``) loads like a hand-written one.

Only the card's set fields are written (``None`` means "not set" in a card), in field order, as one
``[experts.<name>]`` table. Adding a card to an existing file appends its table and leaves the rest of the file,
comments included, untouched; replacing one cuts out exactly that table's lines.
"""
from __future__ import annotations

import json
import re
import tomllib
from dataclasses import fields
from pathlib import Path

from hetmoe.errors import HetmoeError
from hetmoe.experts.card import ExpertCard
from hetmoe.files import write_text_atomic

BARE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # TOML bare keys: names that need no quoting


def toml_value(value: object) -> str:
    """A TOML literal for the value types cards and run configs use (JSON string escapes are valid TOML strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to a card")


def card_table(card: ExpertCard, model: str | None = None) -> str:
    """The card as one ``[experts.<name>]`` table; ``model`` overrides the written model string (e.g. ``./``)."""
    if not BARE_NAME.match(card.name):
        raise HetmoeError(f"expert name {card.name!r} has characters other than letters, digits, '_' and '-'; "
                          "rename it")
    lines = [f"[experts.{card.name}]"]
    values = card.to_dict()
    if model is not None:
        values["model"] = model
    for f in fields(ExpertCard):
        if f.name != "name" and values[f.name] is not None and (f.name, values[f.name]) != ("runtime", "torch"):
            lines.append(f"{f.name} = {toml_value(values[f.name])}")
    return "\n".join(lines) + "\n"


def _without_table(text: str, name: str) -> str:
    """``text`` minus the ``[experts.<name>]`` table (its header up to the next table header)."""
    lines = text.splitlines(keepends=True)
    header = f"[experts.{name}]"
    starts = [i for i, line in enumerate(lines) if line.split("#")[0].strip() == header]
    if len(starts) != 1:
        raise HetmoeError(f"cannot find the table {header} to replace; remove card {name!r} from the file by hand")
    end = next((j for j in range(starts[0] + 1, len(lines)) if lines[j].lstrip().startswith("[")), len(lines))
    return "".join(lines[: starts[0]] + lines[end:])


def _read(path: Path) -> tuple[str, dict[str, object]]:
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    try:
        return text, tomllib.loads(text).get("experts", {})
    except tomllib.TOMLDecodeError as err:
        raise HetmoeError(f"expert cards file {path} is not valid TOML ({err}); fix it or choose another file") from err


def check_can_add(path: str | Path, name: str, replace: bool = False) -> None:
    """Fail now, before long work, if :func:`add_card` would refuse a card called ``name``."""
    path = Path(path).expanduser()
    if name in _read(path)[1] and not replace:
        raise HetmoeError(f"{path} already declares expert {name!r}; pass --overwrite to replace it or choose "
                          "another --name")


def add_card(path: str | Path, card: ExpertCard, replace: bool = False, model: str | None = None) -> Path:
    """Append ``card`` to the cards file at ``path`` (created if absent); an existing card of that name is an error
    unless ``replace``; ``model`` overrides the written model string (e.g. a path relative to the file). Atomic: the
    file is rewritten through a temporary file."""
    path = Path(path).expanduser()
    check_can_add(path, card.name, replace)
    text, declared = _read(path)
    if card.name in declared:
        text = _without_table(text, card.name)
    if text and not text.endswith("\n"):
        text += "\n"
    text += ("\n" if text else "") + card_table(card, model)
    write_text_atomic(path, text)  # umask-following mode, so a service account can read the card
    return path
