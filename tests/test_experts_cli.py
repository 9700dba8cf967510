"""``hetmoe experts list`` and ``hetmoe experts check`` through the real CLI app."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from hetmoe.cli import app
from hetmoe.experts.base import Encoder
from hetmoe.experts.card import ExpertCard, get_card


class Hashed(Encoder):
    """A plugin expert: a 4-d vector from character counts, queries and documents told apart."""

    def __init__(self, card: ExpertCard) -> None:
        super().__init__(card, 4)

    def _encode(self, texts: list[str], kind: str) -> np.ndarray:
        counts = np.array([[len(t), t.count(" ") + 1, sum(c in "aeiou" for c in t)] for t in texts], dtype=np.float32)
        return np.hstack([counts, np.full((len(texts), 1), 5.0 if kind == "query" else 1.0, dtype=np.float32)])


def test_list_json_reports_cards_hashes_and_defaults() -> None:
    result = CliRunner().invoke(app, ["experts", "list", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["defaults"] == ["minilm", "e5", "use", "static", "wordllama"]
    assert doc["cards"]["e5"]["hash"] == get_card("e5").hash and doc["cards"]["qwen"]["dim"] == 1024


def test_check_encodes_with_the_named_expert(tmp_path: Path) -> None:
    cards = tmp_path / "cards.toml"
    cards.write_text(f'[defaults]\nexperts = ["h"]\n'
                     f'[experts.h]\nbackend = "{__name__}:Hashed"\nmodel = "none"\ndim = 4\n')
    result = CliRunner().invoke(app, ["experts", "check", "--cards", str(cards)])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["expert"] == "h" and row["dim"] == 4 and len(row["query_doc_cosine"]) == 3
    assert all(c < 0.999 for c in row["query_doc_cosine"])
    missing = CliRunner().invoke(app, ["experts", "check", "nope", "--cards", str(cards)])
    assert missing.exit_code != 0 and "unknown expert 'nope'" in str(missing.exception)


def test_check_fits_the_model_free_lexical_card_on_the_sample() -> None:
    from hetmoe.lexical import FEATURE_NAMES

    result = CliRunner().invoke(app, ["experts", "check", "lexical"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["expert"] == "lexical" and row["hash"] == get_card("lexical").hash
    assert row["features"] == len(FEATURE_NAMES) and row["each_query_matches_its_own_text_best"] is True
