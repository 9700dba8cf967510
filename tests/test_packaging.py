"""A non-editable install: the wheel carries the packaged expert cards and the licence, and hetmoe run from it (away
from any source checkout) finds its cards."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_cards_and_the_licence(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "hetmoe", source / "hetmoe", ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("hetmoe-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "hetmoe/experts/cards.toml" in names and any(n.endswith("licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = ("import json, hetmoe.experts.card as c; print(c.__file__); "
            "print(json.dumps(sorted(c.load_cards()))); print(json.dumps(c.default_experts()))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("HETMOE_CARDS", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out[0].startswith(str(target))  # the installed copy, not the checkout
    assert {"minilm", "e5", "use", "static", "wordllama", "lexical", "qwen", "gemma"} <= set(json.loads(out[1]))
    assert json.loads(out[2]) == ["minilm", "e5", "use", "static", "wordllama"]
