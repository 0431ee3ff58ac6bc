"""Docstring examples run as written: every module of the package with a ``>>>`` example is
doctested, and an "Example" in a docstring is a doctest, not prose that can go stale."""
import ast
import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lgfn_graph"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = sorted(PACKAGE.rglob("*.py"))
WITH_EXAMPLES = [module_name(p) for p in SOURCES if ">>>" in p.read_text(encoding="utf-8")]


def test_the_examples_are_found():
    assert {"lgfn_graph.exact", "lgfn_graph.metrics", "lgfn_graph.smiles"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    runner, report = doctest.DocTestRunner(optionflags=FLAGS), []
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0, f"{name} has '>>>' but no example doctest finds"
    assert result.failed == 0, "".join(report)


def docstrings(path: Path):
    """``(line, docstring)`` of the module and of every class and function in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in [tree, *ast.walk(tree)]:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield getattr(node, "lineno", 1), doc


def test_every_example_in_a_docstring_is_a_doctest():
    prose = [f"{p.relative_to(PACKAGE.parent)}:{line}" for p in SOURCES for line, doc in docstrings(p)
             if "Example" in doc and ">>>" not in doc]
    assert not prose, f"docstring examples that doctest does not run (write them as '>>>' lines): {prose}"
