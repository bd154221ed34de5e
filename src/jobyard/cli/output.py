"""A job's output as the CLI shows it: whole lines, marker lines (``::jobyard::{…}``,
``jobyard.markers``) left out unless asked for."""

from __future__ import annotations

from jobyard.markers import parse_marker


class LineFilter:
    """Feed it pieces of a log; it gives back the text to show: complete lines only
    (a partial last line waits for the next piece or :meth:`flush`), valid marker lines
    removed unless ``raw``."""

    def __init__(self, *, raw: bool = False) -> None:
        self.raw = raw
        self._partial = ""

    def feed(self, text: str) -> str:
        if self.raw:
            return text
        text = self._partial + text
        cut = text.rfind("\n") + 1
        self._partial = text[cut:]
        return self._keep(text[:cut])

    def flush(self) -> str:
        """The partial last line, if it is not a marker."""
        text, self._partial = self._partial, ""
        return text if self.raw else self._keep(text)

    @staticmethod
    def _keep(text: str) -> str:
        if "::jobyard::" not in text:
            return text
        return "".join(
            line for line in text.splitlines(keepends=True) if parse_marker(line) is None
        )
