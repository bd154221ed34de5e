"""Where clients find the server: arguments, then environment, then ``credentials.json``.

``jobyard serve`` writes ``credentials.json`` (``url`` and ``api_key``, mode 0600) into
its data directory (``$JOBYARD_HOME``, default ``./.jobyard``) and into the user's
configuration directory (``$XDG_CONFIG_HOME/jobyard``, default ``~/.config/jobyard``), so
a local user needs neither flags nor environment variables, in any directory.

Clients read ``credentials.json`` from ``$JOBYARD_HOME`` when it is set; else from
``./.jobyard``, then from the user's configuration directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
CREDENTIALS_FILE = "credentials.json"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The data directory: ``$JOBYARD_HOME`` or ``./.jobyard``."""
    env = os.environ if environ is None else environ
    return Path(env.get("JOBYARD_HOME") or ".jobyard")


def user_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user's credentials directory: ``$XDG_CONFIG_HOME/jobyard`` or
    ``~/.config/jobyard``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or ""
    if not base or not Path(base).is_absolute():  # the XDG rule: a relative value is ignored
        home = env.get("HOME") or str(Path.home())
        base = str(Path(home) / ".config")
    return Path(base) / "jobyard"


def credential_dirs(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where clients look for ``credentials.json``, in order: ``$JOBYARD_HOME`` alone
    when it is set; else ``./.jobyard``, then :func:`user_config_dir`."""
    env = os.environ if environ is None else environ
    if env.get("JOBYARD_HOME"):
        return [Path(env["JOBYARD_HOME"]).expanduser().absolute()]
    return [Path(".jobyard").absolute(), user_config_dir(env)]


@dataclass(frozen=True)
class ServerConfig:
    """What a client found: the URL, the API key and where each came from."""

    url: str
    api_key: str | None
    #: ``JOBYARD_API_KEY``, a credentials.json path, ``""`` (given), None (no key)
    key_source: str | None
    searched: tuple[Path, ...]  #: the credentials.json files looked at

    @property
    def url_hint(self) -> str | None:
        """Said when the default URL cannot be reached: where no server was found."""
        if self.url != DEFAULT_URL or not self.searched:
            return None
        where = ", ".join(str(p) for p in self.searched)
        return (
            f"no credentials.json of a local server in {where}: start one with `jobyard serve`, "
            "or set JOBYARD_URL and JOBYARD_API_KEY (or JOBYARD_HOME)"
        )

    def missing_key_message(self) -> str:
        """What to say when the server wants a key and none was found (or it was refused)."""
        if self.key_source == "":
            return f"the API key given was refused by {self.url}"
        if self.key_source is not None:
            return f"the API key from {self.key_source} was refused by {self.url}"
        where = ", ".join(str(p) for p in self.searched)
        return (
            f"no API key for the jobyard server at {self.url}: none given (--api-key or "
            f"JOBYARD_API_KEY) and no credentials.json in {where}. Start a local server with "
            "`jobyard serve` (it writes one), set JOBYARD_API_KEY, or set JOBYARD_HOME to "
            "the server's data directory"
        )


def locate_server(
    url: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """The server URL and API key to use, and where they came from.

    Each value comes from the first source that has it: the arguments,
    ``JOBYARD_URL`` / ``JOBYARD_API_KEY``, then the first ``credentials.json`` of
    :func:`credential_dirs` that has it. Without any URL the default is
    ``http://127.0.0.1:8000``.
    """
    env = os.environ if environ is None else environ
    source = "" if token else None
    if not token and env.get("JOBYARD_API_KEY"):
        token, source = env["JOBYARD_API_KEY"], "JOBYARD_API_KEY"
    url = url or env.get("JOBYARD_URL") or None
    searched: list[Path] = []
    for directory in credential_dirs(env):
        if url is not None and token:
            break
        searched.append(directory / CREDENTIALS_FILE)
        creds = read_credentials(directory)
        creds_url, creds_key = creds.get("url"), creds.get("api_key")
        if url is None and isinstance(creds_url, str) and creds_url:
            url = creds_url
        if not token and isinstance(creds_key, str) and creds_key:
            token, source = creds_key, str(directory / CREDENTIALS_FILE)
    return ServerConfig((url or DEFAULT_URL).rstrip("/"), token or None, source, tuple(searched))


def read_credentials(directory: Path) -> dict[str, Any]:
    """The content of ``credentials.json`` in ``directory``; ``{}`` if absent or unreadable."""
    try:
        data = json.loads((directory / CREDENTIALS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def find_server(
    url: str | None = None,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, str | None]:
    """The server URL and API key to use.

    See :func:`locate_server`, which also says where they came from.
    """
    found = locate_server(url, token, environ)
    return found.url, found.api_key


def write_credentials(data_dir: Path, url: str, api_key: str) -> Path:
    """Write ``credentials.json`` (mode 0600) into ``data_dir`` atomically; return its path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / CREDENTIALS_FILE
    # mkstemp creates the file with mode 0600, so the key is never readable by others.
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", suffix=".tmp", dir=data_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"url": url, "api_key": api_key}, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
