"""A person's label checked before any work on photos, with a message that quotes it safely.

The rule itself is the gallery's (`is_valid_label`, `LABEL_RULE`); this is where a command
checks it first, so a bad label costs no face detection and is never echoed whole.
"""

from __future__ import annotations

from facerep.tasks.gallery import LABEL_RULE, is_valid_label

# Characters of a label a message quotes: enough to recognise it, never a 100 kB line.
QUOTE_LIMIT = 40


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
