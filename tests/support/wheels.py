"""A tiny wheel built in the test, so pip can install it without any network."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def build_wheel(directory: Path, name: str = "mypkg", value: int = 42) -> Path:
    files = {
        f"{name}/__init__.py": f"VALUE = {value}\n",
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{name}-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: jobyard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    path = directory / f"{name}-1.0-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w") as whl:
        for member, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{member},sha256={digest.decode()},{len(data)}\n")
            whl.writestr(member, data)
        record.append(f"{name}-1.0.dist-info/RECORD,,\n")
        whl.writestr(f"{name}-1.0.dist-info/RECORD", "".join(record))
    return path
