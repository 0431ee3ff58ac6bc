"""FragmentLibrary: loading (shipped and public files), lookup tables, errors, assembly.

The public libraries are read in place from ``/work/shared/data/fragments`` (never copied into
the repository); their tests skip when that folder is absent.
"""
from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest
import torch
from rdkit import Chem

from lgfn_graph.fragments import Fragment, FragmentLibrary, FragmentLibraryError

FRAG_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "fragments"

# file name -> expected number of fragments
PUBLIC = {"fragments_18.json": 18, "fragments_72.json": 72, "blocks_PDB_105.json": 105}


def public_path(name: str) -> Path:
    if not FRAG_DIR.is_dir():
        pytest.skip(f"public fragment folder {FRAG_DIR} not present")
    p = FRAG_DIR / name
    if not p.is_file():
        pytest.skip(f"public fragment file {p} not present")
    return p


def raw_entries(path: Path) -> list[tuple[str, list[int]]]:
    """(smiles, attachment_atoms) read straight from the JSON, independently of the library."""
    raw = json.loads(path.read_text())
    if isinstance(raw, dict):
        keys = list(raw["block_smi"])
        return [(raw["block_smi"][k], list(raw["block_r"][k])) for k in keys]
    return [(e["smiles"], list(e["attachment_atoms"])) for e in raw]


def check_tables(lib: FragmentLibrary, entries: list[tuple[str, list[int]]]) -> None:
    """Every lookup table of ``lib`` against a brute-force enumeration of ``entries``."""
    assert len(lib) == lib.num_fragments == len(entries)
    assert [f.smiles for f in lib.fragments] == [s for s, _ in entries]
    assert [list(f.attachment_atoms) for f in lib.fragments] == [a for _, a in entries]
    assert lib.n_stems.tolist() == [len(a) for _, a in entries]
    assert lib.max_stems == max(len(a) for _, a in entries)
    assert lib.num_library_stems == sum(len(a) for _, a in entries)
    # library stems enumerate (fragment, stem) pairs in order
    pairs = [(f, k) for f, (_, a) in enumerate(entries) for k in range(len(a))]
    assert lib.stem_frag.tolist() == [f for f, _ in pairs]
    assert lib.stem_slot.tolist() == [k for _, k in pairs]
    assert lib.stem_id.shape == (len(entries), lib.max_stems)
    assert lib.stem_id.dtype == lib.stem_frag.dtype == lib.stem_slot.dtype == torch.long
    expected = [[-1] * lib.max_stems for _ in entries]
    for t, (f, k) in enumerate(pairs):
        expected[f][k] = t
    assert lib.stem_id.tolist() == expected
    # round trips
    for t in range(lib.num_library_stems):
        assert int(lib.stem_id[lib.stem_frag[t], lib.stem_slot[t]]) == t
    assert len(lib.mols) == len(entries)
    for m, (s, _) in zip(lib.mols, entries):
        assert m.GetNumAtoms() == Chem.MolFromSmiles(s).GetNumAtoms()


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def test_default_library_loads():
    lib = FragmentLibrary.default()
    assert lib.name == "default"
    ref = resources.files("lgfn_graph") / "data" / "default_fragments.json"
    with resources.as_file(ref) as p:
        entries = raw_entries(Path(p))
    assert len(entries) == 18
    check_tables(lib, entries)
    assert lib.max_stems == 4 and lib.num_library_stems == 34


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_libraries_load(name):
    path = public_path(name)
    lib = FragmentLibrary.from_json(path)
    assert len(lib) == PUBLIC[name]
    check_tables(lib, raw_entries(path))
    assert lib.name == str(path)


def test_public_library_stem_counts():
    """Hand-checked totals of the three public files."""
    expected = {"fragments_18.json": (2, 36), "fragments_72.json": (6, 127), "blocks_PDB_105.json": (6, 222)}
    for name, (max_stems, n_lib) in expected.items():
        lib = FragmentLibrary.from_json(public_path(name))
        assert (lib.max_stems, lib.num_library_stems) == (max_stems, n_lib), name


def test_block_layout_keeps_key_order(tmp_path):
    """The pandas-column layout pairs block_smi and block_r by key, not by position."""
    p = tmp_path / "blocks.json"
    p.write_text(json.dumps({"block_name": {"0": "a", "1": "b"},
                             "block_smi": {"0": "CO", "1": "c1ccccc1"},
                             "block_r": {"1": [0, 3], "0": [1, 0, 0]}}))
    lib = FragmentLibrary.from_json(p)
    assert lib.fragments == [Fragment("CO", (1, 0, 0)), Fragment("c1ccccc1", (0, 3))]
    check_tables(lib, [("CO", [1, 0, 0]), ("c1ccccc1", [0, 3])])


def test_from_pairs_tables_with_repeated_atoms():
    lib = FragmentLibrary.from_pairs([("O", [0, 0]), ("c1ccccc1", [0, 2, 4]), ("F", [0])])
    check_tables(lib, [("O", [0, 0]), ("c1ccccc1", [0, 2, 4]), ("F", [0])])
    assert lib.stem_id.tolist() == [[0, 1, -1], [2, 3, 4], [5, -1, -1]]


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def write(tmp_path, obj, name="lib.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


def load_error(path: Path) -> str:
    with pytest.raises(FragmentLibraryError) as ei:
        FragmentLibrary.from_json(path)
    return str(ei.value)


def test_error_is_value_error():
    assert issubclass(FragmentLibraryError, ValueError)


def test_invalid_smiles_names_index_and_smiles(tmp_path):
    p = write(tmp_path, [{"smiles": "CCO", "attachment_atoms": [0]},
                         {"smiles": "C1CC", "attachment_atoms": [0]}])  # unclosed ring
    msg = load_error(p)
    assert "fragment 1" in msg and "C1CC" in msg and "invalid SMILES" in msg
    assert str(p) in msg


def test_garbage_smiles_from_pairs():
    with pytest.raises(FragmentLibraryError, match=r"fragment 2 \('Xx\(\(' *\).*invalid SMILES"):
        FragmentLibrary.from_pairs([("C", [0]), ("O", [0]), ("Xx((", [0])])


@pytest.mark.parametrize("smiles, problem", [
    ("", "empty SMILES"), ("  ", "empty SMILES"),
    ("C.C", "2 disconnected pieces"), ("CCO.[Na+]", "2 disconnected pieces"),
    ("*C", "dummy atom '*' at index 0"), ("C[*]", "dummy atom '*' at index 1"),
    ("CC O", "whitespace at position 2: RDKit would read only 'CC'"),
])
def test_fragments_that_are_not_one_whole_molecule_are_refused(tmp_path, smiles, problem):
    """RDKit reads all of these without an error (``CC O`` as ethane); a library must not."""
    with pytest.raises(FragmentLibraryError, match=re.escape(f"fragment 1 ({smiles!r}): {problem}")):
        FragmentLibrary.from_pairs([("C", [0]), (smiles, [0])])
    p = write(tmp_path, [{"smiles": "C", "attachment_atoms": [0]}, {"smiles": smiles, "attachment_atoms": [0]}])
    assert load_error(p).startswith(f"{p}: fragment 1 ({smiles!r}): {problem}")


@pytest.mark.parametrize("bad", [5, -1, 2])
def test_attachment_out_of_range(tmp_path, bad):
    p = write(tmp_path, [{"smiles": "CC", "attachment_atoms": [0, bad]}])
    msg = load_error(p)
    assert f"attachment atom {bad}" in msg and "fragment 0" in msg and "'CC'" in msg


@pytest.mark.parametrize("att", [[0.0], ["0"], [True], "0", 0, None, [[0]]])
def test_attachment_not_integer_list(tmp_path, att):
    p = write(tmp_path, [{"smiles": "C", "attachment_atoms": [0]},
                         {"smiles": "CO", "attachment_atoms": att}])
    msg = load_error(p)
    assert "fragment 1" in msg and "'CO'" in msg and "list of integers" in msg


def test_no_attachment_atoms(tmp_path):
    msg = load_error(write(tmp_path, [{"smiles": "CO", "attachment_atoms": []}]))
    assert "fragment 0" in msg and "no attachment" in msg


@pytest.mark.parametrize("entry", [{"smiles": "C"}, {"attachment_atoms": [0]}, {}, "C", ["C", [0]]])
def test_missing_keys(tmp_path, entry):
    p = write(tmp_path, [{"smiles": "C", "attachment_atoms": [0]}, {"smiles": "N", "attachment_atoms": [0]}, entry])
    msg = load_error(p)
    assert "fragment 2" in msg and "smiles" in msg and "attachment_atoms" in msg


def test_block_layout_missing_block_r(tmp_path):
    p = write(tmp_path, {"block_smi": {"0": "C", "7": "CO"}, "block_r": {"0": [0]}})
    msg = load_error(p)
    assert "block 7" in msg and "block_r" in msg


@pytest.mark.parametrize("obj", [{"smiles": "C", "attachment_atoms": [0]}, "C", 3, {"block_smi": {}}])
def test_wrong_top_level(tmp_path, obj):
    msg = load_error(write(tmp_path, obj))
    assert str(tmp_path) in msg and "expected a list" in msg


def test_not_json_names_path(tmp_path):
    p = tmp_path / "notes.json"
    p.write_text("smiles, attachment_atoms\nc1ccccc1, 0\n")
    msg = load_error(p)
    assert str(p) in msg and "not valid JSON" in msg


def test_truncated_json_names_path_and_line(tmp_path):
    p = tmp_path / "cut.json"
    p.write_text('[\n {"smiles": "C",\n  "attachment_atoms": [0')
    msg = load_error(p)
    assert str(p) in msg and "line 3" in msg


def test_binary_file_names_path(tmp_path):
    p = tmp_path / "lib.json"
    p.write_bytes(b"\xff\xfe\x00\x80 not a fragment library")
    msg = load_error(p)
    assert str(p) in msg


def test_missing_file(tmp_path):
    p = tmp_path / "nowhere" / "lib.json"
    msg = load_error(p)
    assert "not found" in msg and str(p) in msg


def test_empty_list(tmp_path):
    p = write(tmp_path, [])
    msg = load_error(p)
    assert "empty" in msg and str(p) in msg
    with pytest.raises(FragmentLibraryError, match="empty"):
        FragmentLibrary.from_pairs([])


@pytest.mark.parametrize("smiles,att", [
    ("C(F)(F)(F)F", [0]),        # carbon would get a fifth bond
    ("O", [0, 0, 0]),            # oxygen with three bonds
    ("c1ccccc1", [0, 0]),        # aromatic CH takes one bond, not two
    ("C(=O)N", [1]),             # carbonyl oxygen is saturated
    ("c1ccncc1", [3]),           # pyridine nitrogen has no H to give up
])
def test_atom_that_cannot_take_the_bonds(tmp_path, smiles, att):
    p = write(tmp_path, [{"smiles": "C", "attachment_atoms": [0]},
                         {"smiles": "CC", "attachment_atoms": [0, 1]},
                         {"smiles": smiles, "attachment_atoms": att}])
    msg = load_error(p)
    assert "fragment 2" in msg and repr(smiles) in msg and "cannot all take a bond" in msg


def test_saturation_boundary_is_accepted():
    """The same atoms are fine when they do have room (guards against over-strict checks)."""
    lib = FragmentLibrary.from_pairs([("C(F)(F)F", [0]), ("O", [0, 0]), ("C", [0, 0, 0, 0]),
                                      ("c1cc[nH]c1", [3]), ("c1ccccc1", [0, 1, 2, 3, 4, 5])])
    assert lib.n_stems.tolist() == [1, 2, 4, 1, 6]


# ---------------------------------------------------------------------------------------------
# assembly
# ---------------------------------------------------------------------------------------------
def smiles_of(mol) -> str:
    return Chem.MolToSmiles(mol)


def canon(s: str) -> str:
    return Chem.MolToSmiles(Chem.MolFromSmiles(s))


def test_assemble_toluene():
    lib = FragmentLibrary.from_pairs([("c1ccccc1", [0]), ("C", [0])])
    assert smiles_of(lib.assemble([0, 1], [(0, 1, 0, 0)])) == canon("Cc1ccccc1") == "Cc1ccccc1"
    # bond orientation does not matter
    assert smiles_of(lib.assemble([1, 0], [(1, 0, 0, 0)])) == "Cc1ccccc1"
    assert smiles_of(lib.assemble([1, 0], [(0, 1, 0, 0)])) == "Cc1ccccc1"


def test_assemble_pyrrole_nh_gives_up_hydrogen():
    lib = FragmentLibrary.from_pairs([("c1cc[nH]c1", [3]), ("C", [0])])
    mol = lib.assemble([0, 1], [(0, 1, 0, 0)])
    assert smiles_of(mol) == "Cn1cccc1"
    n = mol.GetAtomWithIdx(3)
    assert n.GetSymbol() == "N" and n.GetTotalNumHs() == 0
    # the library's own molecule is untouched: assembling again gives the same answer
    assert lib.mols[0].GetAtomWithIdx(3).GetNumExplicitHs() == 1
    assert smiles_of(lib.assemble([0, 1], [(0, 1, 0, 0)])) == "Cn1cccc1"
    assert smiles_of(lib.assemble([0], [])) == "c1cc[nH]c1"


def test_assemble_nh_to_nh():
    """Both ends of a bond give up their H: N,N'-bipyrrole."""
    lib = FragmentLibrary.from_pairs([("c1cc[nH]c1", [3])])
    assert smiles_of(lib.assemble([0, 0], [(0, 1, 0, 0)])) == canon("c1ccn(c1)n1cccc1")


def test_assemble_two_stems_on_one_atom_and_chain():
    lib = FragmentLibrary.from_pairs([("O", [0, 0]), ("C", [0, 0]), ("c1ccccc1", [0, 3])])
    # dimethyl ether: O with both stems used
    assert smiles_of(lib.assemble([0, 1, 1], [(0, 1, 0, 0), (0, 2, 1, 0)])) == "COC"
    # para-xylene-like chain C - benzene(0, 3) - O
    mol = lib.assemble([2, 1, 0], [(0, 1, 0, 0), (0, 2, 1, 0)])
    assert smiles_of(mol) == canon("Cc1ccc(O)cc1")
    assert mol.GetNumAtoms() == 8


def test_assemble_empty_and_unsanitized():
    lib = FragmentLibrary.from_pairs([("C", [0])])
    assert lib.assemble([], []).GetNumAtoms() == 0
    mol = lib.assemble([0, 0], [(0, 1, 0, 0)], sanitize=False)
    assert mol.GetNumAtoms() == 2 and mol.GetNumBonds() == 1


def test_default_library_every_stem_bonds_to_methyl():
    """Each stem of each shipped fragment takes a methyl, and the result has one more carbon."""
    lib = FragmentLibrary.default()
    methyl = FragmentLibrary.from_pairs([(f_.smiles, f_.attachment_atoms) for f_ in lib.fragments] + [("C", [0])])
    m = methyl.num_fragments - 1
    for f, frag in enumerate(lib.fragments):
        for k in range(len(frag.attachment_atoms)):
            mol = methyl.assemble([f, m], [(0, 1, k, 0)])
            Chem.SanitizeMol(mol)
            assert mol.GetNumAtoms() == lib.mols[f].GetNumAtoms() + 1
            assert Chem.MolFromSmiles(Chem.MolToSmiles(mol)) is not None
