"""benchmarks/results/README.md indexes every benchmark report (make bench writes it; a report
run alone afterwards must be added by hand, and was once forgotten)."""
from tests.conftest import ROOT

from benchmarks.run_all import BENCHMARKS

RESULTS = ROOT / "benchmarks" / "results"


def test_the_index_links_every_report_and_shows_it():
    index = (RESULTS / "README.md").read_text()
    reports = {b.report for b in BENCHMARKS} | {p.name for p in RESULTS.glob("*.md") if p.name != "README.md"}
    for name in sorted(reports):
        assert f"[{name}]({name})" in index, f"{name} is not linked from {RESULTS / 'README.md'}"
        title = (RESULTS / name).read_text().splitlines()[0]
        assert "#" + title in index, f"{name} is linked but its report is not in the index"
