"""The rule for text a person sends (a requirement, a follow-up's request, feedback): at least one visible
character. `require_visible` checks it, `visible_text_pattern()` states it in a JSON Schema."""

from __future__ import annotations

import sys
import unicodedata
from functools import cache

# What a person does not see on its own, by Unicode category: format characters (U+200B, U+FEFF, ...),
# control characters, combining marks, and spaces and separators of every width.
INVISIBLE_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Mn": "a combining mark",
    "Me": "an enclosing mark",
    "Zs": "a space",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}


def is_visible(character: str) -> bool:
    """Whether one character shows on its own: any Unicode category but INVISIBLE_CATEGORIES (letters,
    digits, punctuation, symbols and emoji; private-use and unassigned code points count too)."""
    return unicodedata.category(character) not in INVISIBLE_CATEGORIES


def _described(character: str) -> str:
    """`U+200B ZERO WIDTH SPACE`; a character without a name (a control character) by its kind."""
    name = unicodedata.name(character, "") or f"({INVISIBLE_CATEGORIES[unicodedata.category(character)]})"
    return f"U+{ord(character):04X} {name}"


def require_visible(text: str, field: str) -> str:
    """`text` unchanged when it has at least one visible character and no NUL; otherwise a ValueError
    naming `field` and what is wrong, for a 422."""
    if "\x00" in text:
        raise ValueError(f"{field} contains NUL characters (U+0000): remove them.")
    if any(is_visible(character) for character in text):
        return text
    if not text:
        raise ValueError(f"{field} has no visible character: it is empty (or only whitespace). Send some text.")
    found = list(dict.fromkeys(text))
    named = ", ".join(_described(character) for character in found[:3])
    more = f" and {len(found) - 3} other invisible characters" if len(found) > 3 else ""
    raise ValueError(f"{field} has no visible character: it contains only {named}{more}. Send text a person can read.")


@cache
def visible_text_pattern() -> str:
    """`require_visible` as a regular expression: no NUL, and one character outside INVISIBLE_CATEGORIES.

    Written for Python's re, pydantic-core's Rust regex and ECMAScript's (with the `u` flag) alike: BMP
    characters as `\\uXXXX`, the few astral ones as themselves (the three have no common escape for them).
    Computed on first use from this Python's Unicode tables, so it always agrees with `is_visible`.
    """
    ranges: list[list[int]] = []
    for code in range(sys.maxunicode + 1):
        if not is_visible(chr(code)):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])

    def spelled(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)

    invisible = "".join(spelled(low) + ("" if low == high else "-" + spelled(high)) for low, high in ranges)
    return f"^[^\\u0000]*[^{invisible}][^\\u0000]*$"
