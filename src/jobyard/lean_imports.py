"""What the server process leaves out of the libraries it imports (≈ 3.5 MB of its RSS).

Called once, first thing in the process that becomes the server (``cli/launch.py``),
before uvicorn and the API's routes are imported:

- FastAPI imports ``pydantic.v1`` (≈ 1.5 MB) on the first route it builds, only to refuse
  pydantic v1 models. jobyard has none: ``sys.modules["pydantic.v1"] = None`` makes that
  import fail at once, which FastAPI reads as "no v1 model" (its path for a pydantic
  without v1). Any later import of ``pydantic.v1`` in the server fails.
- ``import uvicorn`` runs the package's ``__init__``, which imports its command line
  (click), its reloaders (watchfiles and its Rust library) and ``multiprocessing`` (≈ 2
  MB). The server uses ``uvicorn.config`` and ``uvicorn.server`` only: the package is
  made from its spec without running ``__init__``, and runs it on the first read of a
  name it lacks (``uvicorn.run``, ``uvicorn.__version__``, …). If that fails, the
  package is imported as usual.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType


def for_the_server() -> None:
    """Both of the above; idempotent."""
    refuse_pydantic_v1()
    uvicorn_without_its_cli()


def refuse_pydantic_v1() -> None:
    """Make ``import pydantic.v1`` fail in this process (unless it is already loaded)."""
    sys.modules.setdefault("pydantic.v1", None)  # type: ignore[arg-type]


def uvicorn_without_its_cli() -> None:
    """Load ``uvicorn.config`` and ``uvicorn.server`` without the package's ``__init__``;
    the package gets ``Config`` and ``Server`` and runs its ``__init__`` when any other
    name is read. A no-op if ``uvicorn`` is already imported."""
    if "uvicorn" in sys.modules:
        return
    spec = importlib.util.find_spec("uvicorn")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules["uvicorn"] = package
    try:
        from uvicorn.config import Config
        from uvicorn.server import Server
    except Exception:  # a uvicorn laid out otherwise: import it as usual
        for name in [m for m in sys.modules if m == "uvicorn" or m.startswith("uvicorn.")]:
            del sys.modules[name]
        return
    package.Config = Config  # type: ignore[attr-defined]
    package.Server = Server  # type: ignore[attr-defined]
    package.__getattr__ = _complete(package)  # type: ignore[method-assign]


def _complete(package: ModuleType) -> Callable[[str], object]:
    """The package's ``__getattr__``: run its ``__init__`` once, then read the name."""

    def __getattr__(name: str) -> object:
        spec = package.__spec__
        if "__getattr__" in vars(package) and spec is not None and spec.loader is not None:
            del package.__getattr__
            spec.loader.exec_module(package)
        try:
            return vars(package)[name]
        except KeyError:
            raise AttributeError(f"module 'uvicorn' has no attribute {name!r}") from None

    return __getattr__
