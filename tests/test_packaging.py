"""The conda environment and pyproject.toml must name the same packages, and importing the
package changes nothing of the user's (RDKit logging, matplotlib's backend)."""
import re
import subprocess
import sys

import pytest

tomllib = pytest.importorskip("tomllib")

import yaml

from tests.conftest import ROOT


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    listed = {_name(r) for r in pip if not r.startswith("-")} | conda
    assert listed == wanted


def test_torch_is_pinned_to_the_local_cpu_wheel():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in project["dependencies"]
    assert "torch-scatter" not in {_name(r) for r in project["dependencies"]}


_NO_SIDE_EFFECTS = r"""
import sys
from pathlib import Path

import matplotlib
matplotlib.use("svg")  # the user's choice, which the library must keep
from rdkit import Chem, rdBase

before = rdBase.LogStatus()
import lgfn_graph, lgfn_graph.cli, lgfn_graph.studies.mode_seeking  # noqa: E401
from lgfn_graph.evaluate import plot_reward_vs_beta
from lgfn_graph.smiles import mol_from_smiles

assert rdBase.LogStatus() == before, (before, rdBase.LogStatus())
assert mol_from_smiles("C1CC") is None  # the library's own failed parse: not logged
plot_reward_vs_beta([{"beta": 1.0, "mean_reward": 0.5, "std_reward": 0.1},
                     {"beta": 4.0, "mean_reward": 0.7, "std_reward": 0.1}], Path(sys.argv[1]))
assert Path(sys.argv[1]).stat().st_size > 0
print("backend", matplotlib.get_backend(), flush=True)
Chem.MolFromSmiles("C1CC")  # the user's own failed parse: logged as RDKit always does
"""


def test_importing_and_plotting_leave_rdkit_logging_and_the_matplotlib_backend_alone(tmp_path):
    done = subprocess.run([sys.executable, "-c", _NO_SIDE_EFFECTS, str(tmp_path / "plot.png")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "backend svg" in done.stdout
    # one parse error in the log: the user's, none from the library's own parse before it
    assert done.stderr.count("SMILES Parse Error") == 1, done.stderr
