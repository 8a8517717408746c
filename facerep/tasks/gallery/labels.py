"""The rule for a person's label, and a message that quotes a bad one safely.

A command checks the label first (`check_label`), so a bad label costs no face detection and is
never echoed whole; the gallery checks it again on every write, so no path can store it.
"""

from __future__ import annotations

import unicodedata

# A label names a person, not a document: one line of at most this many characters.
MAX_LABEL = 200
LABEL_RULE = (
    f"must be 1-{MAX_LABEL} characters on one line, not only spaces, with no control characters"
)
# Characters of a label a message quotes: enough to recognise it, never a 100 kB line.
QUOTE_LIMIT = 40


def is_valid_label(label: object) -> bool:
    """Whether `label` can name a person in a gallery (see `LABEL_RULE`)."""
    return (
        isinstance(label, str)
        and bool(label.strip())
        and len(label) <= MAX_LABEL
        and not any(_is_control(c) for c in label)
    )


# Joiners that ordinary spellings need (Persian and Indic names, emoji sequences), though
# Unicode files them as format characters.
JOINERS = {"\u200c", "\u200d"}


def _is_control(character: str) -> bool:
    """Unicode category C but what names use: controls (ANSI escapes, tabs, line breaks),
    format characters (bidi overrides that reorder a printed line) but the joiners,
    surrogates (undecodable bytes) and private use; unassigned code points (emoji newer than
    this Python's tables) are allowed."""
    category = unicodedata.category(character)
    return category in ("Cc", "Cs", "Co") or (category == "Cf" and character not in JOINERS)


def quote_label(label: str) -> str:
    """`label` quoted for a one-line message: control characters escaped (as `repr` writes
    them), and past `QUOTE_LIMIT` characters shortened, with its length."""
    if len(label) <= QUOTE_LIMIT:
        return repr(label)
    return f"{label[:QUOTE_LIMIT]!r}… ({len(label):,} characters)"


def check_label(label: str, what: str = "label") -> str:
    """`label` if it can name a person in a gallery.

    Raises:
        ValueError: it cannot; the message names `what` (e.g. `--label`), quotes the label
            shortened and states the rule.
    """
    if not is_valid_label(label):
        raise ValueError(f"{what} {quote_label(label)}: {LABEL_RULE}")
    return label
