"""SMILES text read whole or refused: RDKit silently reads some texts only in part."""
from __future__ import annotations


def partial_read(text: str) -> str | None:
    """Why RDKit would read only part of the SMILES ``text``, or ``None`` when it reads all of
    it (or fails, which callers see for themselves).

    RDKit's parser stops at the first whitespace and keeps the rest as the molecule's name, so
    ``"CC O"`` reads as ethane, without an error.

    >>> partial_read("CC O")
    "whitespace at position 2: RDKit would read only 'CC'"
    >>> partial_read("CCO") is None
    True
    """
    for i, ch in enumerate(text):
        if ch.isspace():
            return f"whitespace at position {i}: RDKit would read only {text[:i]!r}"
    return None
