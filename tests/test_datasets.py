"""Reading (SMILES, value) tables: line numbers in errors, skipped-row reports, duplicates."""
import csv
import re

import numpy as np
import pytest

from lgfn_graph.datasets import DatasetError, read_molecule_csv


def write(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_values_lines_and_canonical_smiles(tmp_path):
    path = write(tmp_path, "smiles,value\nOCC,1.5\n\nc1ccccc1, 2\n")
    ds = read_molecule_csv(path)
    assert ds.smiles == ["CCO", "c1ccccc1"] and ds.lines == [2, 4]  # line 3 is blank
    np.testing.assert_array_equal(ds.values, [1.5, 2.0])
    assert ds.report == [] and len(ds) == 2 and ds.path == path
    assert [m.GetNumAtoms() for m in ds.mols()] == [3, 6]


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_sniffs_the_delimiter_and_handles_quotes(tmp_path, sep):
    text = sep.join(['"id"', '"SMILES"', '"score"']) + "\n" + sep.join(['"a, b"', '"CCO"', '"3.5"']) + "\n"
    ds = read_molecule_csv(write(tmp_path, text), "SMILES", "score")
    assert ds.smiles == ["CCO"] and ds.values.tolist() == [3.5]


def test_a_quoted_field_over_two_lines_keeps_line_numbers_right(tmp_path):
    path = write(tmp_path, 'name,smiles,value\n"two\nlines",CCO,1\nx,C1CC,2\n')
    with pytest.raises(DatasetError, match=r"data.csv:4: unparsable SMILES: 'C1CC' \(syntax error\)"):
        read_molecule_csv(path)


def test_bad_smiles_at_a_known_line(tmp_path):
    path = write(tmp_path, "smiles,value\nCCO,1\nC(C)(C)(C)(C)C,2\nCCN,3\n")
    with pytest.raises(DatasetError, match=r"data.csv:3: unparsable SMILES: 'C\(C\)\(C\)\(C\)\(C\)C' .*valence"):
        read_molecule_csv(path)
    ds = read_molecule_csv(path, on_error="skip")
    assert ds.smiles == ["CCO", "CCN"] and ds.lines == [2, 4]
    assert [(i.line, i.problem) for i in ds.report] == [(3, "unparsable SMILES")]
    assert "1 unparsable SMILES" in ds.summary()


@pytest.mark.parametrize("field, shown", [("CC O", "'CC O'"), ('"CC\tO"', r"'CC\tO'"), ('"CC\nO"', r"'CC\nO'")])
def test_smiles_rdkit_would_read_in_part_is_refused(tmp_path, field, shown):
    """RDKit reads ``CC O`` as ethane (it stops at whitespace): the table must not."""
    path = write(tmp_path, f"smiles,value\nCCO,1\n{field},2\nCCN,3\n")
    message = f"data.csv:3: unparsable SMILES: {shown} (whitespace at position 2: RDKit would read only 'CC')"
    with pytest.raises(DatasetError, match=re.escape(message)):
        read_molecule_csv(path)
    ds = read_molecule_csv(path, on_error="skip")
    assert ds.smiles == ["CCO", "CCN"] and [(i.line, i.problem) for i in ds.report] == [(3, "unparsable SMILES")]


@pytest.mark.parametrize("value, problem", [("nan", "non-finite value"), ("inf", "non-finite value"),
                                            ("-Infinity", "non-finite value"), ("", "missing value"),
                                            ("high", "bad value")])
def test_bad_values_name_their_line(tmp_path, value, problem):
    path = write(tmp_path, f"smiles,value\nCCO,1\nCCN,{value}\n")
    with pytest.raises(DatasetError, match=f"data.csv:3: {problem}:.*'CCN'"):
        read_molecule_csv(path)
    ds = read_molecule_csv(path, on_error="skip")
    assert ds.smiles == ["CCO"] and [(i.line, i.problem) for i in ds.report] == [(3, problem)]


def test_short_row(tmp_path):
    with pytest.raises(DatasetError, match="data.csv:3: short row: 1 fields, header has 2"):
        read_molecule_csv(write(tmp_path, "smiles,value\nCCO,1\nCCN\n"))


def test_missing_file_empty_file_and_header_only(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_molecule_csv(tmp_path / "nope.csv")
    for text in ("", " \n\n"):
        with pytest.raises(DatasetError, match="data.csv is empty"):
            read_molecule_csv(write(tmp_path, text))
    with pytest.raises(DatasetError, match=r"no usable rows \(0 data rows"):
        read_molecule_csv(write(tmp_path, "smiles,value\n"))
    with pytest.raises(DatasetError, match=r"no usable rows \(1 data rows, 1 left out; first: line 2: missing"):
        read_molecule_csv(write(tmp_path, "smiles,value\nCCO,\n"), on_error="skip")


def test_missing_column_suggests_the_closest(tmp_path):
    path = write(tmp_path, "Smiles,pChEMBL Value\nCCO,1\n")
    with pytest.raises(DatasetError, match=r"no column 'SMILES' \(did you mean 'Smiles'\?\); columns present: "
                                           r"\['Smiles', 'pChEMBL Value'\]"):
        read_molecule_csv(path, "SMILES", "pChEMBL Value")
    with pytest.raises(DatasetError, match=r"no column 'pchembl' \(did you mean 'pChEMBL Value'\?\)"):
        read_molecule_csv(path, "Smiles", "pchembl")
    with pytest.raises(DatasetError, match=r"no column 'zzz'; columns"):
        read_molecule_csv(path, "Smiles", "zzz")


DUPLICATES = "smiles,value\nCCO,1\nCCN,5\nOCC,2\nC(O)C,6\n"  # lines 2, 4, 5 are ethanol


@pytest.mark.parametrize("mode, smiles, values, lines", [
    ("mean", ["CCO", "CCN"], [3.0, 5.0], [2, 3]),
    ("first", ["CCO", "CCN"], [1.0, 5.0], [2, 3]),
    ("keep", ["CCO", "CCN", "CCO", "CCO"], [1.0, 5.0, 2.0, 6.0], [2, 3, 4, 5]),
])
def test_duplicates(tmp_path, mode, smiles, values, lines):
    ds = read_molecule_csv(write(tmp_path, DUPLICATES), duplicates=mode)
    assert ds.smiles == smiles and ds.values.tolist() == values and ds.lines == lines
    reported = [(i.line, i.problem) for i in ds.report]
    assert reported == ([] if mode == "keep" else [(4, "duplicate"), (5, "duplicate")])
    if mode != "keep":
        assert "line 2" in ds.report[0].detail


def test_duplicates_error_names_both_lines(tmp_path):
    with pytest.raises(DatasetError, match="lines 2 and 4 hold the same molecule CCO"):
        read_molecule_csv(write(tmp_path, DUPLICATES), duplicates="error")
    with pytest.raises(ValueError, match="duplicates must be"):
        read_molecule_csv(write(tmp_path, DUPLICATES), duplicates="last")


def test_chembl_file(shared_data):
    path = shared_data / "seh_chembl" / "seh_chembl.csv"
    with pytest.raises(DatasetError, match=r"seh_chembl.csv:22: missing value"):
        read_molecule_csv(path, "Smiles", "pChEMBL Value")
    with open(path, newline="") as f:  # reference: no field spans lines, so row k is on line k + 2
        rows = list(csv.DictReader(f, delimiter=";"))
    no_value = [k + 2 for k, r in enumerate(rows) if not r["pChEMBL Value"]]
    assert len(rows) == 2858 and len(no_value) == 646

    ds = read_molecule_csv(path, "Smiles", "pChEMBL Value", on_error="skip", duplicates="keep")
    assert [i.line for i in ds.report] == no_value and {i.problem for i in ds.report} == {"missing value"}
    assert len(ds) == 2858 - 646 == 2212
    assert ds.values.tolist() == [float(r["pChEMBL Value"]) for r in rows if r["pChEMBL Value"]]
    merged = read_molecule_csv(path, "Smiles", "pChEMBL Value", on_error="skip")
    assert len(merged) == len(set(ds.smiles)) == 1812
    assert sum(i.problem == "duplicate" for i in merged.report) == 2212 - 1812
