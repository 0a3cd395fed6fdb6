"""docs/architecture.md shows the layers of the import-linter contract, in the contract's order."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_documented_layers_are_the_contracts() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [layers] = [c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = doc.split("<!-- BEGIN layers")[1].split("<!-- END layers -->")[0]
    documented = [line.strip() for line in block.splitlines() if line.strip().startswith("meshkit.")]
    assert documented == layers
