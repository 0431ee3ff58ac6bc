"""Fragment libraries: molecular building blocks with attachment points ("stems")."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Sequence

import torch
from rdkit import Chem, rdBase

from .smiles import mol_from_smiles, partial_read


class FragmentLibraryError(ValueError):
    """A fragment library file or entry is invalid."""


@dataclass(frozen=True)
class Fragment:
    """A building block: a SMILES and the atoms where bonds to other fragments may form.

    ``attachment_atoms`` may repeat an atom index: that atom then has two stems.
    """

    smiles: str
    attachment_atoms: tuple[int, ...]


@dataclass
class FragmentLibrary:
    """An ordered list of fragments, validated, with the lookup tables the environment needs.

    A *stem* is one attachment point: stem ``k`` of fragment ``f`` is the atom
    ``fragments[f].attachment_atoms[k]``. The library also numbers every (fragment, stem) pair
    of the whole library, ``0 .. num_library_stems - 1``: a new fragment joins a molecule
    through one such pair.

    Attributes:
        fragments: the fragments, in order.
        mols: RDKit molecules of the fragments.
        n_stems: long ``[num_fragments]``, stems per fragment.
        stem_frag, stem_slot: long ``[num_library_stems]``, the fragment and the stem index of
            each library stem.
        stem_id: long ``[num_fragments, max_stems]``, the library stem number of (fragment,
            stem), ``-1`` where the fragment has fewer stems.
    """

    fragments: list[Fragment]
    name: str = "custom"
    mols: list = field(init=False, repr=False)

    def __post_init__(self):
        if not self.fragments:
            raise FragmentLibraryError(f"fragment library {self.name!r} is empty")
        self.mols = [_validate_fragment(i, f, self.name) for i, f in enumerate(self.fragments)]
        self.n_stems = torch.tensor([len(f.attachment_atoms) for f in self.fragments])
        self.stem_frag = torch.repeat_interleave(torch.arange(len(self.fragments)), self.n_stems)
        starts = self.n_stems.cumsum(0) - self.n_stems
        self.stem_slot = torch.arange(len(self.stem_frag)) - starts[self.stem_frag]
        slots = torch.arange(self.max_stems)
        self.stem_id = torch.where(slots < self.n_stems[:, None], starts[:, None] + slots, -1)

    @property
    def num_fragments(self) -> int:
        return len(self.fragments)

    @property
    def max_stems(self) -> int:
        return int(self.n_stems.max())

    @property
    def num_library_stems(self) -> int:
        return int(self.stem_frag.numel())

    def __len__(self) -> int:
        return len(self.fragments)

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_json(cls, path: str | Path) -> "FragmentLibrary":
        """Read a library from JSON.

        Two layouts are accepted: a list of ``{"smiles": ..., "attachment_atoms": [...]}``
        (the 18- and 72-fragment files), or pandas-style columns with ``block_smi`` and
        ``block_r`` (the 105-block file of Bengio et al. 2021).
        """
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise FragmentLibraryError(f"fragment library file not found: {path}") from None
        except json.JSONDecodeError as e:
            raise FragmentLibraryError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise FragmentLibraryError(f"{path}: cannot be read as a JSON text file ({type(e).__name__}: {e})") from None
        return cls(_parse_entries(raw, str(path)), name=str(path))

    @classmethod
    def default(cls) -> "FragmentLibrary":
        """The small library shipped with the package (18 common drug-like fragments)."""
        ref = resources.files("lgfn_graph") / "data" / "default_fragments.json"
        with resources.as_file(ref) as p:
            lib = cls.from_json(p)
        lib.name = "default"
        return lib

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, Sequence[int]]], name: str = "custom") -> "FragmentLibrary":
        """Build a library from ``(smiles, attachment_atoms)`` pairs."""
        return cls([Fragment(s, tuple(int(a) for a in att)) for s, att in pairs], name=name)

    # -- chemistry ---------------------------------------------------------------------------
    def assemble(self, frags: Sequence[int], bonds: Sequence[tuple[int, int, int, int]], sanitize: bool = True):
        """Join fragments into one RDKit molecule.

        Args:
            frags: the fragment index of each node.
            bonds: ``(u, v, stem_u, stem_v)``: a single bond between stem ``stem_u`` of node
                ``u`` and stem ``stem_v`` of node ``v``.
        """
        if len(frags) == 0:
            return Chem.Mol()
        mol = Chem.RWMol()
        offsets = []
        for f in frags:
            offsets.append(mol.GetNumAtoms())
            mol.InsertMol(self.mols[f])
        for u, v, su, sv in bonds:
            a = offsets[u] + self.fragments[frags[u]].attachment_atoms[su]
            b = offsets[v] + self.fragments[frags[v]].attachment_atoms[sv]
            mol.AddBond(a, b, Chem.BondType.SINGLE)
            for idx in (a, b):  # an atom written with explicit H ([nH]) gives one up
                atom = mol.GetAtomWithIdx(idx)
                if atom.GetNumExplicitHs() > 0:
                    atom.SetNumExplicitHs(atom.GetNumExplicitHs() - 1)
        mol = mol.GetMol()
        if sanitize:
            Chem.SanitizeMol(mol)
        return mol


def _parse_entries(raw, source: str) -> list[Fragment]:
    if isinstance(raw, dict) and "block_smi" in raw and "block_r" in raw:
        keys = list(raw["block_smi"].keys())
        try:
            raw = [{"smiles": raw["block_smi"][k], "attachment_atoms": raw["block_r"][k]} for k in keys]
        except KeyError as e:
            raise FragmentLibraryError(f"{source}: block {e.args[0]} has a SMILES but no block_r entry") from None
    if not isinstance(raw, list):
        raise FragmentLibraryError(f"{source}: expected a list of fragments or block_smi/block_r columns")
    out = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or "smiles" not in entry or "attachment_atoms" not in entry:
            raise FragmentLibraryError(f"{source}: fragment {i} needs keys 'smiles' and 'attachment_atoms', got {entry!r}")
        att = entry["attachment_atoms"]
        if not isinstance(att, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in att):
            raise FragmentLibraryError(f"{source}: fragment {i} ({entry['smiles']!r}): attachment_atoms must be a list of integers, got {att!r}")
        out.append(Fragment(str(entry["smiles"]), tuple(att)))
    return out


def _validate_fragment(i: int, frag: Fragment, source: str):
    """The fragment's molecule; raises :class:`FragmentLibraryError` naming ``source``, ``i``
    and the SMILES unless it is one whole molecule whose every stem can take a bond at once."""
    where = f"{source}: fragment {i} ({frag.smiles!r})"
    mol = _fragment_mol(frag.smiles, where)
    if not frag.attachment_atoms:
        raise FragmentLibraryError(f"{where}: has no attachment atom")
    for a in frag.attachment_atoms:
        if not 0 <= a < mol.GetNumAtoms():
            raise FragmentLibraryError(f"{where}: attachment atom {a} out of range (molecule has {mol.GetNumAtoms()} atoms)")
    # every stem must be able to take a bond at once: cap them all with methyls and sanitize
    rw = Chem.RWMol(mol)
    for a in frag.attachment_atoms:
        c = rw.AddAtom(Chem.Atom(6))
        rw.AddBond(a, c, Chem.BondType.SINGLE)
        atom = rw.GetAtomWithIdx(a)
        if atom.GetNumExplicitHs() > 0:
            atom.SetNumExplicitHs(atom.GetNumExplicitHs() - 1)
    try:
        with rdBase.BlockLogs():  # the error below says it all; RDKit's own log line adds nothing
            Chem.SanitizeMol(rw)
    except Exception as e:  # RDKit raises several types; all mean the same thing here
        raise FragmentLibraryError(f"{where}: the atoms {list(frag.attachment_atoms)} cannot all take a bond: {e}") from None
    return mol


def _fragment_mol(smiles: str, where: str):
    """The molecule of a fragment's SMILES: read whole, one connected piece, real atoms only."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise FragmentLibraryError(f"{where}: empty SMILES")
    partial = partial_read(smiles)
    if partial:
        raise FragmentLibraryError(f"{where}: {partial}")
    mol = mol_from_smiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        raise FragmentLibraryError(f"{where}: invalid SMILES")
    dummies = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 0]
    if dummies:
        raise FragmentLibraryError(f"{where}: dummy atom '*' at index {dummies[0]}: mark the attachment points "
                                   "with attachment_atoms instead")
    pieces = len(Chem.GetMolFrags(mol))
    if pieces > 1:
        raise FragmentLibraryError(f"{where}: {pieces} disconnected pieces: a fragment must be one molecule")
    return mol
