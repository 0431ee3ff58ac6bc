"""Execute the notebooks top to bottom at tiny size and check a few facts from their outputs.

The kernel is this Python (a kernel spec written into a temporary folder names ``sys.executable``),
with ``LGFN_NOTEBOOK_TINY=1`` and one thread; it runs in a temporary folder, so the notebooks'
relative output paths land there and nothing is written into the repository.

``python tests/test_notebooks.py notebooks/NAME.ipynb ...`` executes notebooks at their default
size instead and stores the outputs in them (what the committed notebooks hold).
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "lgfn-notebook"


def execute(path: Path, workdir: Path, tiny: bool, timeout: int = 600):
    """Run the notebook at ``path`` in ``workdir`` with a kernel of this Python; returns it executed.
    Raises ``nbclient.exceptions.CellExecutionError`` naming the cell on any error."""
    spec_dir = workdir / ".kernel"
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1") if not tiny else "1",
           "IPYTHONDIR": str(spec_dir / "ipython"),  # no user profile or startup files
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if tiny:
        env["LGFN_NOTEBOOK_TINY"] = "1"
    (spec_dir / KERNEL).mkdir(parents=True)
    (spec_dir / KERNEL / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lgfn_graph notebook test", "language": "python", "env": env}))
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir)]))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, km=km, timeout=timeout, record_timing=False,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return nb


def tagged_text(nb, tag: str) -> str:
    """The printed output (stdout: warnings go to stderr) of the one cell tagged ``tag``."""
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return "".join(o.get("text", "") for o in cells[0].outputs if o.output_type == "stream" and o.name == "stdout")


def table_rows(text: str) -> list[list[str]]:
    """The rows of a printed table (the lines after the header line), split on whitespace."""
    lines = [line.split() for line in text.strip().splitlines()]
    header = next(i for i, words in enumerate(lines) if "beta" in words)
    return lines[header + 1:]


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.fixture(scope="module")
def run_tiny(tmp_path_factory):
    done = {}

    def run(name: str):
        if name not in done:
            done[name] = execute(NOTEBOOKS / name, tmp_path_factory.mktemp(name.split(".")[0]), tiny=True)
        return done[name]
    return run


def test_quickstart(run_tiny):
    nb = run_tiny("quickstart.ipynb")
    rows = table_rows(tagged_text(nb, "summary"))
    assert [float(r[0]) for r in rows] == [1.0, 4.0, 16.0, 64.0]  # one row per beta
    assert all(0.0 <= float(r[1]) <= 1.0 for r in rows)  # mean reward
    assert "identical samples after reloading: True" in tagged_text(nb, "reload")
    assert images(nb) >= 5  # fragments, training curves, dial plots, molecules, g(beta)


def test_custom_backbone_and_reward(run_tiny):
    nb = run_tiny("custom_backbone_and_reward.ipynb")
    assert "agree: True" in tagged_text(nb, "reward")
    assert "RewardError: reward broken returned" in tagged_text(nb, "validation")
    rows = table_rows(tagged_text(nb, "summary"))
    assert [float(r[0]) for r in rows] == [1.0, 8.0, 32.0]
    assert "identical samples after reloading: True" in tagged_text(nb, "reload")


def test_offline_generalization(run_tiny):
    nb = run_tiny("offline_generalization.ipynb")
    rows = table_rows(tagged_text(nb, "correlations"))
    betas = [1, 5, 10, 50, 100, 500, 1000, 5000]
    assert [(r[0], float(r[1])) for r in rows] == [(m, b) for m in ("logit", "layer") for b in betas]
    for r in rows:
        spearman, pearson = float(r[2]), float(r[3])
        assert math.isfinite(spearman) and math.isfinite(pearson) and abs(spearman) <= 1 and abs(pearson) <= 1
    assert len(table_rows(tagged_text(nb, "clip"))) == 4


def test_pyg_pipeline(run_tiny):
    nb = run_tiny("pyg_pipeline.ipynb")
    report = tagged_text(nb, "report")
    assert re.search(r"held out \d+ of \d+ molecules", report)
    spearman = float(re.search(r"held-out Spearman: (\S+)", report).group(1))
    assert math.isfinite(spearman) and abs(spearman) <= 1
    rows = table_rows(tagged_text(nb, "dial"))
    assert [float(r[0]) for r in rows] == [1.0, 4.0, 16.0]  # one row per beta
    for _, n, mean_reward, mean_qed, unique, _ in rows:
        assert int(n) > 0 and 0.0 <= float(mean_reward) < math.inf and 0.0 <= float(mean_qed) <= 1.0
        assert 0.0 < float(unique) <= 1.0
    roundtrip = tagged_text(nb, "roundtrip")
    assert "loaded == saved: True" in roundtrip
    batches = int(re.search(r"DataLoader batches: (\d+)", roundtrip).group(1))
    assert batches == math.ceil(sum(int(r[1]) for r in rows) / 64)  # every sample, 64 a batch
    assert "proxy(batch) == y: True" in roundtrip  # the loaded graphs score as the reward did
    assert "identical samples after reloading: True" in tagged_text(nb, "reload")


def test_notebooks_are_stored_with_outputs_and_no_errors():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        tagged = [c for c in code if c.metadata.get("tags")]
        assert tagged and all(c.outputs for c in tagged), f"{path.name}: stored without outputs"
        assert not any(o.output_type == "error" for c in code for o in c.outputs), f"{path.name}: stored error"
        text = "".join(c.source for c in code)
        assert not re.search(r"/work/|/home/|/tmp/", text), f"{path.name}: machine-specific path in the code"


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        p = Path(arg).resolve()
        with tempfile.TemporaryDirectory() as work:
            executed = execute(p, Path(work), tiny=False, timeout=1800)
        nbformat.write(executed, p)
        print(f"stored outputs in {p}")
