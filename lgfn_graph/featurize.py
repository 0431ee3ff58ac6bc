"""Atom-level PyG graphs of RDKit molecules: the featurizer of the sEH proxy (Bengio et al. 2021).

Node features ``x [N, 71]`` (float32), one row per heavy atom:

=========  ============================================================================
column     meaning
=========  ============================================================================
0-5        element one-hot: H, C, N, O, F, any other element
6-8        always 0 (unused columns of the published layout)
9          aromatic (0/1)
10-12      hybridization one-hot: SP, SP2, SP3 (others: all 0)
13         number of hydrogens, implicit and explicit
14-69      atomic number one-hot, Z = 1..56 in column 13 + Z (heavier elements: all 0)
70         always 0
=========  ============================================================================

Edge features ``edge_attr [E, 4]``: bond type one-hot (single/unspecified, double, triple,
aromatic); each bond appears in both directions, coalesced.
"""
from __future__ import annotations

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem.rdchem import BondType, HybridizationType
from torch_geometric.data import Data

NUM_ATOM_FEATURES = 71
NUM_BOND_FEATURES = 4

_SYMBOL_COL = {"H": 0, "C": 1, "N": 2, "O": 3, "F": 4}  # any other element: column 5
_HYBRIDIZATION_COL = {HybridizationType.SP: 10, HybridizationType.SP2: 11, HybridizationType.SP3: 12}
_AROMATIC_COL, _NUM_HS_COL = 9, 13
_Z_OFFSET, _MAX_ONE_HOT_Z = 13, 56  # atomic number Z in 1..56 sets column 13 + Z (= 14 + Z - 1)
_BOND_COL = {BondType.SINGLE: 0, BondType.UNSPECIFIED: 0, BondType.DOUBLE: 1, BondType.TRIPLE: 2,
             BondType.AROMATIC: 3}


class FeaturizeError(ValueError):
    """A molecule that cannot be turned into a graph (``None``, empty, unknown bond type, unsanitized)."""


def mol_to_graph(mol: Chem.Mol) -> Data:
    """The atom-level graph of one RDKit molecule (no explicit hydrogens, sanitized), as the sEH
    proxy reads it and as :mod:`lgfn_graph.pyg` exports samples.

    Shapes: ``x [N, 71]``, ``edge_index [2, E]`` (each bond both ways, coalesced),
    ``edge_attr [E, 4]`` (single/unspecified, double, triple, aromatic). A molecule without
    bonds gets one self-loop ``0 -> 0`` with an all-zero feature.

    Raises :class:`FeaturizeError` for ``None``, an empty molecule, a bond of another type, or
    a molecule RDKit cannot describe (e.g. not sanitized).
    """
    if mol is None:
        raise FeaturizeError("the molecule is None (an unparsable SMILES?)")
    n = mol.GetNumAtoms()
    if n == 0:
        raise FeaturizeError("the molecule has no atoms")
    x = np.zeros((n, NUM_ATOM_FEATURES), dtype=np.float32)
    try:
        # by index: RDKit's GetAtoms()/GetBonds() sequence wrappers cost more than the features
        for i in range(n):
            atom = mol.GetAtomWithIdx(i)
            z = atom.GetAtomicNum()
            x[i, _SYMBOL_COL.get(atom.GetSymbol(), 5)] = 1.0
            x[i, _AROMATIC_COL] = float(atom.GetIsAromatic())
            col = _HYBRIDIZATION_COL.get(atom.GetHybridization())
            if col is not None:
                x[i, col] = 1.0
            x[i, _NUM_HS_COL] = atom.GetTotalNumHs(includeNeighbors=True)
            if 1 <= z <= _MAX_ONE_HOT_Z:
                x[i, _Z_OFFSET + z] = 1.0
        ends, kinds = [], []
        for j in range(mol.GetNumBonds()):
            bond = mol.GetBondWithIdx(j)
            if bond.GetBondType() not in _BOND_COL:
                raise FeaturizeError(f"bond {bond.GetIdx()} has type {bond.GetBondType()}, which the featurizer does not know")
            ends.append((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
            kinds.append(_BOND_COL[bond.GetBondType()])
    except FeaturizeError:
        raise
    except Exception as e:  # RDKit raises several types (e.g. on an unsanitized molecule)
        first = (str(e).strip().splitlines() or [""])[0]
        raise FeaturizeError(f"RDKit cannot describe the molecule (is it sanitized?): {type(e).__name__}: {first}") from None
    if ends:
        # each bond both ways, sorted by (source, target): what coalesce gives, since RDKit has at
        # most one bond per atom pair, in numpy rather than several small torch calls per molecule
        pairs = np.asarray(ends, dtype=np.int64)
        src, dst = np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 0]])
        order = np.argsort(src * n + dst, kind="stable")
        edge_index = torch.from_numpy(np.stack([src[order], dst[order]]))
        edge_attr = torch.from_numpy(np.eye(NUM_BOND_FEATURES, dtype=np.float32)[np.asarray(kinds * 2)[order]])
    else:
        edge_index = torch.zeros(2, 1, dtype=torch.long)
        edge_attr = torch.zeros(1, NUM_BOND_FEATURES)
    return Data(x=torch.from_numpy(x), edge_index=edge_index, edge_attr=edge_attr)


__all__ = ["FeaturizeError", "NUM_ATOM_FEATURES", "NUM_BOND_FEATURES", "mol_to_graph"]
