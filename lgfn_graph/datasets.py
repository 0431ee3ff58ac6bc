"""Reading a user's table of molecules and scores (SMILES, value) from a CSV file, robustly."""
from __future__ import annotations

import csv
import difflib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rdkit import Chem, rdBase

from .smiles import partial_read

Duplicates = Literal["mean", "first", "error", "keep"]
_DELIMITERS = ",;\t|"


class DatasetError(ValueError):
    """A molecule table cannot be read; the message names the file, line, column or SMILES."""


@dataclass(frozen=True)
class RowIssue:
    """A data row that did not become an entry of its own.

    Attributes:
        line: 1-based line number in the file (the header is line 1).
        problem: a short category, e.g. ``"missing value"``, ``"unparsable SMILES"``,
            ``"duplicate"``.
        detail: what was wrong, naming the text found.
    """

    line: int
    problem: str
    detail: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}: {self.detail}"


@dataclass
class MoleculeDataset:
    """Molecules and their scores, ``N`` entries.

    Attributes:
        smiles: ``N`` canonical RDKit SMILES.
        values: ``[N]`` float64 scores (the mean over duplicates with ``duplicates="mean"``).
        lines: ``N`` 1-based file line numbers (of the first occurrence of a duplicate).
        report: rows skipped (bad rows with ``on_error="skip"``, later duplicates with
            ``"first"``) or merged into an earlier row (``"mean"``), in file order.
        path: the file read.
    """

    smiles: list[str]
    values: np.ndarray
    lines: list[int]
    report: list[RowIssue] = field(default_factory=list)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.smiles)

    def mols(self) -> list[Chem.Mol]:
        """The ``N`` molecules, parsed from :attr:`smiles`."""
        return [Chem.MolFromSmiles(s) for s in self.smiles]

    def summary(self) -> str:
        """One line: entries kept and rows reported, by problem."""
        counts = ", ".join(f"{n} {p}" for p, n in sorted(Counter(i.problem for i in self.report).items()))
        return f"{self.path}: {len(self)} molecules" + (f"; rows left out or merged: {counts}" if counts else "")


def _sniff(sample: str) -> str:
    """The delimiter of ``sample`` (the file's start): csv's sniffer, else the one most
    frequent in the header line, else a comma."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        header = sample.splitlines()[0]
        best = max(_DELIMITERS, key=header.count)
        return best if header.count(best) else ","


def _column(header: list[str], name: str, path: Path) -> int:
    if header.count(name) > 1:
        raise DatasetError(f"{path}: column {name!r} appears {header.count(name)} times in the header")
    if name in header:
        return header.index(name)
    lower = {h.lower(): h for h in header}
    close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.5)
    hint = f" (did you mean {lower[close[0]]!r}?)" if close else ""
    raise DatasetError(f"{path}: no column {name!r}{hint}; columns present: {header}")


def _parse_smiles(text: str) -> tuple[str | None, str, str]:
    """``(canonical SMILES, "", "")``, or ``(None, problem, detail)``."""
    if not text:
        return None, "missing SMILES", "empty SMILES field"
    partial = partial_read(text)
    if partial:
        return None, "unparsable SMILES", f"{text!r} ({partial})"
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(text)
        if mol is not None:
            return Chem.MolToSmiles(mol), "", ""
        raw = Chem.MolFromSmiles(text, sanitize=False)
        why = "syntax error" if raw is None else _chemistry_problems(raw)
    return None, "unparsable SMILES", f"{text!r} ({why})"


def _chemistry_problems(mol: Chem.Mol) -> str:
    try:
        return "; ".join(p.Message() for p in Chem.DetectChemistryProblems(mol))
    except RuntimeError as e:  # RDKit cannot even check some inputs, e.g. [CH128]
        return str(e)


def _parse_value(text: str, smiles: str) -> tuple[float | None, str, str]:
    """``(value, "", "")``, or ``(None, problem, detail)`` naming the row's ``smiles``."""
    if not text:
        return None, "missing value", f"empty value field for {smiles!r}"
    try:
        v = float(text)
    except ValueError:
        return None, "bad value", f"{text!r} is not a number (for {smiles!r})"
    if not math.isfinite(v):
        return None, "non-finite value", f"value is {text!r} for {smiles!r}"
    return v, "", ""


def _rows(path: Path, sep: str | None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and ``(first line number, fields)`` of each non-blank data row."""
    if not path.is_file():
        raise FileNotFoundError(f"molecule table not found: {path}")
    rows, line = [], 1
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            sample = f.read(65536)
            if not sample.strip():
                raise DatasetError(f"{path} is empty: expected a header line and rows of (SMILES, value)")
            f.seek(0)
            reader = csv.reader(f, delimiter=sep or _sniff(sample))
            header = [h.strip() for h in next(reader)]
            line = reader.line_num
            for fields in reader:
                if any(x.strip() for x in fields):
                    rows.append((line + 1, fields))
                line = reader.line_num
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not a UTF-8 text file ({e})") from e
    except csv.Error as e:
        raise DatasetError(f"{path}:{line + 1}: {e}") from e
    return header, rows


def read_molecule_csv(path: str | Path, smiles_col: str = "smiles", value_col: str = "value",
                      sep: str | None = None, on_error: Literal["raise", "skip"] = "raise",
                      duplicates: Duplicates = "mean") -> MoleculeDataset:
    """Read ``(SMILES, value)`` pairs from a delimited text file with a header line.

    Args:
        path: the file; quoted fields and a UTF-8 byte-order mark are fine.
        smiles_col, value_col: header names of the two columns (exact, after stripping spaces).
        sep: the delimiter; ``None`` (default) sniffs it among ``, ; TAB |``.
        on_error: a row with a missing or unparsable SMILES (also one RDKit would read only in
            part, such as ``CC O``: whitespace inside), or a missing, non-numeric, NaN or
            infinite value raises :class:`DatasetError` naming its line (``"raise"``), or is
            left out and listed in :attr:`MoleculeDataset.report` (``"skip"``).
        duplicates: rows whose SMILES are the same molecule (same canonical SMILES): ``"mean"``
            averages their values, ``"first"`` keeps the first row, ``"error"`` raises,
            ``"keep"`` keeps them all.

    Returns:
        a :class:`MoleculeDataset` of ``N`` molecules. Raises :class:`FileNotFoundError` for a
        missing file and :class:`DatasetError` for an empty one, a missing column (with the
        closest name and the columns present) or no usable row.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if duplicates not in ("mean", "first", "error", "keep"):
        raise ValueError(f"duplicates must be 'mean', 'first', 'error' or 'keep', got {duplicates!r}")
    path = Path(path)
    header, rows = _rows(path, sep)
    si, vi = _column(header, smiles_col, path), _column(header, value_col, path)
    report: list[RowIssue] = []
    groups: dict[str, list[tuple[int, float]]] = {}
    for line, fields in rows:
        if len(fields) <= max(si, vi):
            problem, detail = "short row", f"{len(fields)} fields, header has {len(header)}"
        else:
            value, problem, detail = _parse_value(fields[vi].strip(), fields[si].strip())
        if not problem:
            smi, problem, detail = _parse_smiles(fields[si].strip())
        if problem:
            if on_error == "raise":
                raise DatasetError(f"{path}:{line}: {problem}: {detail}")
            report.append(RowIssue(line, problem, detail))
            continue
        groups.setdefault(smi, []).append((line, value))
    smiles, values, lines = _resolve_duplicates(groups, duplicates, report, path)
    if not smiles:
        raise DatasetError(f"{path}: no usable rows ({len(rows)} data rows, {len(report)} left out"
                           + (f"; first: {report[0]})" if report else ")"))
    report.sort(key=lambda issue: issue.line)
    return MoleculeDataset(smiles, np.asarray(values, dtype=np.float64), lines, report, path)


def _resolve_duplicates(groups: dict[str, list[tuple[int, float]]], duplicates: Duplicates,
                        report: list[RowIssue], path: Path) -> tuple[list[str], list[float], list[int]]:
    """One entry per molecule (or per row with ``"keep"``), sorted by line; adds to ``report``."""
    entries = []
    for smi, rows in groups.items():
        (first, v0), later = rows[0], rows[1:]
        if later and duplicates == "error":
            raise DatasetError(f"{path}: lines {first} and {later[0][0]} hold the same molecule {smi}")
        if duplicates == "keep":
            entries += [(line, smi, v) for line, v in rows]
            continue
        value = float(np.mean([v for _, v in rows])) if duplicates == "mean" else v0
        action = "averaged into" if duplicates == "mean" else "skipped, keeping"
        report += [RowIssue(line, "duplicate", f"{smi} {action} line {first}") for line, _ in later]
        entries.append((first, smi, value))
    entries.sort()
    return [e[1] for e in entries], [e[2] for e in entries], [e[0] for e in entries]


__all__ = ["DatasetError", "MoleculeDataset", "RowIssue", "read_molecule_csv"]
