"""One CLI: the whole typer app introspected. An option name means the same thing with the same default in every
command that has it; the differences that remain are listed below with their reason, so a new one fails here."""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hetmoe import __version__
from hetmoe.cli import app
from hetmoe.commands.options import FIT_OPTIONS, split_names

ROOT = Path(__file__).resolve().parents[1]
# Same name, default chosen per command, and why.
PER_COMMAND_DEFAULT = {
    "--out": "every command writes its own folder (stores/model, stores/router, ...); --out is a folder everywhere",
    "--store": "'stores' where a command reads or writes stores itself; None (the stores a model records) beside --model",
    "--data": "required where a command reads a dataset; None beside --model (the dataset it records) or --config, "
              "and in experts check, which reads one only to measure a runtime on its texts",
    "--model": "required where a command needs a model; diagnose only optionally fuses one",
    "--queries-per-market": "queries per market of the dataset written: 300 for the demo, 1000 for a sample",
    "--valid-fraction": "ESCI moves this share of its train queries to valid (test is official); a CSV log splits all",
    "--sample": "how many to sample, each command its own: 5,000 items (diagnose), 500 texts (experts check)",
    "--lora-r": "tune trains LoRA adapters (rank 8); distil trains every weight (0): a student has more to learn",
    "--lr": "a learning rate for what is trained: LoRA adapters (tune, 2e-4) or every weight (distil, 3e-5)",
}
# Same name, another thing: the card field the option fills (the card's own word for its encoder is "model").
OTHER_THING = {("--model", ("experts", "add")): "the new card's model (a folder or hub id), not a fitted model"}
READS_CARDS = {("embed",), ("index",), ("tune",), ("distil",), ("fit-head",), ("fit-router",), ("run",), ("experts", "list"),
               ("experts", "check"), ("experts", "add")}


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = dict(_commands(typer.main.get_command(app)))


def _options() -> dict[str, list[tuple[tuple[str, ...], Any]]]:
    by_name: dict[str, list[tuple[tuple[str, ...], Any]]] = defaultdict(list)
    for path, command in COMMANDS.items():
        for param in command.params:
            long = [o for o in param.opts if o.startswith("--")]
            if param.param_type_name == "option" and long and (long[0], path) not in OTHER_THING:
                by_name[long[0]].append((path, param))
    return by_name


def _shape(param: Any) -> tuple[Any, ...]:
    return (param.type_descriptor.annotation, param.multiple, param.is_flag, tuple(param.opts),
            tuple(param.secondary_opts), getattr(param.callback, "__name__", None))


def test_an_option_name_has_one_type_and_one_default() -> None:
    wrong = []
    for name, uses in _options().items():
        shapes = {_shape(p) for _, p in uses}
        defaults = {repr(None if p.required else p.default) for _, p in uses}
        if len(shapes) > 1 or (len(defaults) > 1 and name not in PER_COMMAND_DEFAULT):
            wrong.append(f"{name}: " + "; ".join(f"{' '.join(c)}={p.default!r}/{_shape(p)}" for c, p in uses))
    assert not wrong, "\n".join(wrong)


def test_per_command_defaults_keep_to_their_rule() -> None:
    options = _options()
    for path, param in options["--out"]:
        default = "" if param.default is None else str(param.default)
        assert not Path(default).suffix, (path, default)  # a folder, never a file
        assert "file" not in (param.help or "").split(".")[0].lower(), (path, param.help)
    for name in ("--store", "--data"):
        for path, param in options[name]:
            elsewhere = path == ("experts", "check") or any("--model" in p.opts or "--config" in p.opts
                                                             for p in COMMANDS[path].params)
            assert param.required or param.default in (Path("stores"), None), (name, path)
            assert param.default is not None or param.required or elsewhere, (name, path)


def test_experts_option_is_repeatable_and_splits_commas_everywhere() -> None:
    uses = _options()["--expert"]
    assert {" ".join(path) for path, _ in uses} >= {"embed", "index", "tune", "fit-head", "fit-router", "run", "diagnose"}
    for path, param in uses:
        assert param.multiple and param.callback.__name__ == split_names.__name__ and "-e" in param.opts, path
    assert split_names(["minilm,e5", " static ", "e5", ""]) == ["minilm", "e5", "static"]


def test_cards_on_every_command_that_reads_cards() -> None:
    with_cards = {path for path, command in COMMANDS.items() if any("--cards" in p.opts for p in command.params)}
    assert READS_CARDS <= with_cards, READS_CARDS - with_cards


def test_the_three_worker_counts_have_three_names() -> None:
    options = _options()
    assert "--workers" not in options
    assert {p for p, _ in options["--train-workers"]} == {("fit-head",), ("run",), ("demo",)}
    assert {p for p, _ in options["--ray-workers"]} == {("embed",), ("score",), ("distil",)}
    assert {p for p, _ in options["--http-workers"]} == {("serve",)}


def test_run_takes_every_fit_head_option_with_its_default() -> None:
    def options(path: tuple[str, ...]) -> dict[str, Any]:
        return {p.name: (p.default, _shape(p)) for p in COMMANDS[path].params}

    fit_head, run = options(("fit-head",)), options(("run",))
    shared = {p.name for p in FIT_OPTIONS}
    assert shared <= set(fit_head) and shared <= set(run)
    assert {n: fit_head[n] for n in shared} == {n: run[n] for n in shared}
    assert set(fit_head) - set(run) == {"store"}  # run writes OUT/stores itself


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_has_h_and_an_example_and_flags_read_as_flags(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output and "hetmoe " + " ".join(path) in result.output.split("Example:")[1]
    assert "<bool>" not in result.output


def test_version_and_root_help() -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["--version"]).output.strip() == f"hetmoe {__version__}"
    assert runner.invoke(app, ["-h"]).exit_code == 0


def test_flags_refuse_a_value() -> None:
    result = CliRunner().invoke(app, ["experts", "list", "--json", "true"])
    assert result.exit_code != 0  # --json takes no value, and its help shows none


def test_no_library_package_imports_the_command_layer() -> None:
    offenders = []
    for path in (ROOT / "hetmoe").rglob("*.py"):
        rel = path.relative_to(ROOT / "hetmoe")
        if rel.parts[0] == "commands" or rel == Path("cli.py"):
            continue
        if re.search(r"^\s*(from|import) hetmoe\.(commands|cli)\b", path.read_text(encoding="utf-8"), flags=re.M):
            offenders.append(str(rel))
    assert not offenders
