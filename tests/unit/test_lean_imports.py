"""``lean_imports``: pydantic v1 refused, uvicorn without its ``__init__`` until a name it
lacks is read. Each case runs in a fresh interpreter (they change ``sys.modules``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

UVICORN = """
import importlib.metadata, json, sys
from jobyard import lean_imports
lean_imports.uvicorn_without_its_cli()
import uvicorn
from uvicorn import Config, Server
from uvicorn.config import Config as ConfigItself
from uvicorn.server import Server as ServerItself
lean = sorted(m for m in ("uvicorn.main", "click", "watchfiles", "multiprocessing")
              if m in sys.modules)
same = Config is ConfigItself and Server is ServerItself
config = Config(app=lambda scope, receive, send: None, port=0, log_config=None)
config.load()  # the protocol, loop and lifespan modules: `from uvicorn import Config`
try:
    uvicorn.no_such_name
    missing = "read"
except AttributeError as e:
    missing = str(e)
print(json.dumps({
    "lean": lean,
    "same": same,
    "loaded": config.loaded,
    "version": uvicorn.__version__ == importlib.metadata.version("uvicorn"),
    "run": callable(uvicorn.run),
    "main": "uvicorn.main" in sys.modules,
    "missing": missing,
}))
"""

PYDANTIC_V1 = """
import json, sys
from jobyard import lean_imports
lean_imports.refuse_pydantic_v1()
from fastapi import FastAPI
from pydantic import BaseModel

class Item(BaseModel):
    name: str

app = FastAPI()

@app.post("/items")
def add(item: Item) -> Item:
    return item

try:
    import pydantic.v1
    v1 = "imported"
except ImportError:
    v1 = "refused"
schema = app.openapi()
print(json.dumps({"v1": v1, "item": sorted(schema["components"]["schemas"]["Item"]["properties"])}))
"""


def _run(code: str, pythonpath: Path | None = None) -> Any:
    env = None  # with pythonpath: its packages first
    if pythonpath is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_uvicorn_serves_without_its_command_line_until_asked() -> None:
    assert _run(UVICORN) == {
        "lean": [],
        "same": True,
        "loaded": True,
        "version": True,  # read: the package's own __init__ runs ...
        "run": True,
        "main": True,  # ... and imports its command line
        "missing": "module 'uvicorn' has no attribute 'no_such_name'",
    }


def test_a_uvicorn_laid_out_otherwise_is_imported_as_usual(tmp_path: Path) -> None:
    package = tmp_path / "uvicorn"
    package.mkdir()
    (package / "__init__.py").write_text("RAN_INIT = True\n")  # no config.py, no server.py
    code = """
import json, sys
from jobyard import lean_imports
lean_imports.uvicorn_without_its_cli()
left = sorted(m for m in sys.modules if m.split(".")[0] == "uvicorn")
import uvicorn
print(json.dumps({"left": left, "init": uvicorn.RAN_INIT, "file": uvicorn.__file__}))
"""
    assert _run(code, pythonpath=tmp_path) == {
        "left": [],
        "init": True,
        "file": str(package / "__init__.py"),
    }


def test_fastapi_builds_and_documents_routes_with_pydantic_v1_refused() -> None:
    assert _run(PYDANTIC_V1) == {"v1": "refused", "item": ["name"]}
