"""Text from event data, made safe for a terminal table (pure).

Experiment ids, variants and event names come from whoever can send events: rich would
read ``[/bold]`` in them as markup (MarkupError, a crash) and ``[link=…]`` as a hyperlink,
and raw escape sequences would reach the analyst's terminal. ``safe()`` strips control
characters (C0, DEL, C1 and the bidirectional overrides that reorder what is shown) and
escapes rich markup; every table the CLI and ``make demo`` print passes data through it.
"""

from __future__ import annotations

import re

from rich.markup import escape, render

# C0 controls (tab included: it breaks columns), DEL, C1 controls, and bidi embedding /
# override / isolate characters (U+202A-U+202E, U+2066-U+2069): "Trojan Source" reordering
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# rich >= 15 also reads a backslash before a "[" that starts no tag as an escape ("\\[" shows
# "["), which its own ``escape()`` leaves alone: such a backslash is doubled, so it shows as
# itself. Decided by asking the installed rich, so rich 13-14 (no such rule) stay as they were.
_BACKSLASH_BEFORE_PLAIN_BRACKET = re.compile(r"\\(?=\[(?![a-z#/@][^\[]*?\]))")
_RICH_UNESCAPES_PLAIN_BRACKETS = render("\\[").plain == "["


def printable(value: object) -> str:
    """``value`` as text without control characters (each becomes U+FFFD, so it is visible)."""
    return _UNPRINTABLE.sub("\ufffd", str(value))


def safe(value: object) -> str:
    """``value`` as a rich markup string that renders literally: no styles, links or escapes."""
    text = printable(value)
    markup = escape(text)
    if _RICH_UNESCAPES_PLAIN_BRACKETS:
        markup = _BACKSLASH_BEFORE_PLAIN_BRACKET.sub(r"\\\\", markup)
    # a trailing run of n backslashes must be 2n, or the tag after it loses n // 2 of them
    # (rich's escape() only pads a run of one)
    trailing = len(text) - len(text.rstrip("\\"))
    return markup.rstrip("\\") + "\\" * (2 * trailing) if trailing else markup
