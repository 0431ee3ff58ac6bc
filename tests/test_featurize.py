"""The public atom featurizer (lgfn_graph.featurize) against hand-computed graphs."""
import pytest
import torch
from rdkit import Chem

from lgfn_graph.featurize import NUM_ATOM_FEATURES, NUM_BOND_FEATURES, FeaturizeError, mol_to_graph


def test_ethanol_by_hand():
    g = mol_to_graph(Chem.MolFromSmiles("CCO"))
    assert g.x.shape == (3, NUM_ATOM_FEATURES) and g.x.dtype == torch.float32
    expected = torch.zeros(3, NUM_ATOM_FEATURES)
    for i, (symbol_col, z, hs) in enumerate([(1, 6, 3), (1, 6, 2), (3, 8, 1)]):
        expected[i, symbol_col] = 1  # element
        expected[i, 12] = 1  # SP3
        expected[i, 13] = hs  # hydrogens
        expected[i, 13 + z] = 1  # atomic number
    assert torch.equal(g.x, expected)
    # two bonds, both directions, sorted (coalesced), all single
    assert g.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]]
    assert torch.equal(g.edge_attr, torch.tensor([[1.0, 0, 0, 0]] * 4))


def test_aromatic_and_multiple_bonds():
    g = mol_to_graph(Chem.MolFromSmiles("c1ccccc1C#N"))
    assert g.x[:6, 9].tolist() == [1.0] * 6 and g.x[6:, 9].tolist() == [0.0, 0.0]
    assert g.x[:6, 11].tolist() == [1.0] * 6  # SP2
    assert g.x[6, 10] == 1 and g.x[7, 10] == 1  # the nitrile is SP
    kinds = g.edge_attr.argmax(1)
    assert g.edge_attr.shape == (16, NUM_BOND_FEATURES)  # 8 bonds, both ways
    assert [(kinds == k).sum().item() for k in range(4)] == [2, 0, 2, 12]  # single, double, triple, aromatic


def test_single_atom_gets_a_self_loop():
    g = mol_to_graph(Chem.MolFromSmiles("[Cl-]"))
    assert g.edge_index.tolist() == [[0], [0]] and g.edge_attr.tolist() == [[0.0] * NUM_BOND_FEATURES]
    assert g.x[0, 5] == 1 and g.x[0, 13 + 17] == 1  # "other element", Z = 17


@pytest.mark.parametrize("mol, why", [(None, "None"), (Chem.Mol(), "no atoms")])
def test_bad_molecules_are_named(mol, why):
    with pytest.raises(FeaturizeError, match=why):
        mol_to_graph(mol)
