"""Error text for people: every user-facing failure is one line naming the input and the problem."""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(e: BaseException, limit: int = 500) -> str:
    """The message of ``e`` on one line (whitespace folded, at most ``limit`` characters);
    the exception's type name when it has no message."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
