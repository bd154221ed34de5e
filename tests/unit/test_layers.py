"""The import-linter contracts in pyproject.toml (run by ``scripts/test``) list the
packages each layer must not import. A contract written as "everything but …" is a list
of every other top-level module: a package added later must join those lists, or the
contract would let the layer import it unnoticed."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]
#: contract name → what its source may import of jobyard besides itself
EVERYTHING_BUT = {
    "domain is pure: it imports nothing of jobyard but errors and clock": {
        "jobyard.errors",
        "jobyard.clock",
    },
    "the SDK imports nothing of the server": set(),
    "the CLI talks to the server only through the SDK": {"jobyard.sdk", "jobyard.markers"},
}


def _top_level_modules() -> set[str]:
    package = ROOT / "src" / "jobyard"
    return {
        f"jobyard.{p.stem}"
        for p in package.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__")
        or (p.is_dir() and (p / "__init__.py").exists())
    }


def _contracts() -> dict[str, dict[str, Any]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    return {c["name"]: c for c in contracts}


def test_everything_but_contracts_name_every_other_module() -> None:
    contracts = _contracts()
    modules = _top_level_modules()
    assert {"jobyard.domain", "jobyard.sdk", "jobyard.wiring"} <= modules
    for name, allowed in EVERYTHING_BUT.items():
        contract = contracts[name]
        forbidden = set(contract["forbidden_modules"])
        covered = forbidden | allowed | set(contract["source_modules"])
        assert covered == modules, (
            f"{name!r}: not listed {sorted(modules - covered)}, unknown {sorted(covered - modules)}"
        )
        assert not forbidden & allowed
