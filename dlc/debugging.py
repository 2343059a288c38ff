"""`DLC_DEBUG=1`: what the one-line errors leave out.

A backend failure (TVM failing to build or export a library, a package's
library failing to load) is reported as a `DlcError` carrying the last line
of the backend's message, raised `from` the backend's exception.  With
DLC_DEBUG set, the CLI prints that underlying exception in full after the
error: the backend's whole message and the traceback down to it."""
from __future__ import annotations

import os
import traceback


def debug_enabled() -> bool:
    return os.environ.get("DLC_DEBUG", "") not in ("", "0")


def underlying(e: BaseException) -> BaseException | None:
    """The exception `e` was raised from (`raise ... from cause`), or the one
    it was raised while handling, unless that was suppressed (`from None`)."""
    if e.__cause__ is not None:
        return e.__cause__
    if e.__context__ is not None and not e.__suppress_context__:
        return e.__context__
    return None


def underlying_report(e: BaseException) -> str | None:
    """The full message and traceback of what `e` was raised from, or None
    when `e` is dlc's own error with nothing beneath it."""
    cause = underlying(e)
    if cause is None:
        return None
    text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip()
    return f"---- the underlying {type(cause).__name__} (DLC_DEBUG=1) ----\n{text}"
