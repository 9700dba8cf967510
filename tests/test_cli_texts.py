"""What the CLI and reports tell a new user: commands that exist, defaults that match the README, reasons shown."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.moe.report import markdown


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_serve_help_names_commands_that_exist() -> None:
    text = _help("serve")
    assert "'hetmoe fit-head'" in text and not re.search(r"hetmoe fit\b(?!-)", text)
    assert "/search answers 503" in text


def test_fit_head_and_fit_router_write_under_stores_like_the_readme() -> None:
    assert "[default: stores/model]" in _help("fit-head")
    assert "[default: stores/router]" in _help("fit-router")  # a folder, like every --out
    steps = open("docs/design.md", encoding="utf-8").read()  # the README links the steps one by one here
    assert "--out stores/model" in steps
    assert "docs/design.md#the-four-steps" in open("README.md", encoding="utf-8").read()


def _report(k: int, n: int) -> dict:
    return {
        "dataset": "d",
        "split": "test",
        "queries": 1,
        "pairs": 2,
        "markets": ["SG"],
        "variants": {},
        "k": k,
        "n_experts": n,
        "router_expert": "static",
    }


def test_report_says_why_moe_equals_soft_when_k_is_every_expert() -> None:
    assert "k = 3 is the number of experts, so the MoE routes every query to all of them" in markdown(_report(3, 3))
    assert "routes every query to all" not in markdown(_report(2, 3))
    assert "routes every query to all" not in markdown(
        {k: v for k, v in _report(2, 3).items() if k not in ("k", "n_experts")}
    )


def test_embed_help_documents_the_lock() -> None:
    text = _help("embed")
    assert "--no-wait" in text and "fail at once naming its pid" in text


def test_import_csv_help_documents_encoding() -> None:
    assert "--encoding" in _help("data", "import-csv") and "latin-1" in _help("data", "import-csv")


def test_report_names_the_router_input_rule_routing_reads_none() -> None:
    moe = {"routing_share": {"e5": 1.0}, "routing_share_by_market": {"SG": {"e5": 1.0}}}
    assert "the learned router also needs the `static` query vector" in markdown(_report(1, 2))
    rule = {**_report(1, 2), "router_expert": None}
    rule["variants"] = {"moe": {**moe, "auc": 0.9, "auc_macro": 0.9, "auc_by_market": {"SG": 0.9}, "ndcg10": 0.8,
                                "experts_per_query": 1.0}}
    text = markdown(rule)
    assert "router input: the market's row of the rule table" in text and "`None`" not in text
