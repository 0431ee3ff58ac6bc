"""SMILES in and out without surprises: text read whole or refused (RDKit silently reads some
texts only in part), parse failures kept out of RDKit's log, and molecules too broken to write."""
from __future__ import annotations

from rdkit import Chem, rdBase


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


def mol_from_smiles(text: str) -> Chem.Mol | None:
    """RDKit's sanitized molecule of the SMILES ``text``, or ``None`` where RDKit cannot read it.

    RDKit's log line for a failure is blocked (for this call only: the caller raises its own
    error naming the text); the user's RDKit logging is otherwise untouched.

    >>> mol_from_smiles("C1CC") is None
    True
    """
    with rdBase.BlockLogs():
        return Chem.MolFromSmiles(text)


def smiles_or_none(mol: Chem.Mol | None) -> str | None:
    """``mol``'s canonical SMILES, or ``None`` for no molecule or one RDKit cannot write (RDKit
    raises several types for a molecule too broken to write).

    >>> smiles_or_none(Chem.MolFromSmiles("OCC")), smiles_or_none(None)
    ('CCO', None)
    """
    if mol is None:
        return None
    try:
        return Chem.MolToSmiles(mol)
    except Exception:  # RDKit raises many types; all mean "no SMILES" here
        return None


def describe_molecule(mol: Chem.Mol | None) -> str:
    """``mol`` for an error message: its canonical SMILES, ``"None"`` for no molecule, or
    ``"<unwritable molecule>"`` for one RDKit cannot write (the message names its index anyway)."""
    if mol is None:
        return "None"
    smiles = smiles_or_none(mol)
    return "<unwritable molecule>" if smiles is None else smiles
