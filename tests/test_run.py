"""Training runs from flags (lgfn_graph/run.py): the CLI flags, beta lists and the summary table."""
import argparse
from pathlib import Path

import pytest

from lgfn_graph.config import load_config
from lgfn_graph.run import add_training_args, config_from_args, format_summary, parse_betas
from lgfn_graph.task import TaskConfig

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_config_is_make_runs_run():
    a = add_training_args(argparse.ArgumentParser(), "runs/qed_frag", 8, 32.0, "1,2,4,8,16,32,64").parse_args([])
    assert load_config(ROOT / "configs" / "qed_frag.yaml") == config_from_args(
        a, TaskConfig("qed_frag", max_fragments=8))



def test_parse_betas_reads_a_comma_list_and_names_a_bad_value():
    assert parse_betas("1,4,16") == [1.0, 4.0, 16.0]
    assert parse_betas("0.5") == [0.5]
    with pytest.raises(ValueError, match=r"eval.betas must be comma-separated numbers, got '1,x'"):
        parse_betas("1,x", "eval.betas")
    with pytest.raises(ValueError, match="eval.betas"):
        parse_betas("1,-2", "eval.betas")


def test_format_summary_is_one_header_and_one_line_per_beta():
    summary = [{"beta": 1.0, "mean_reward": 0.25, "max_reward": 0.5, "unique_fraction": 1.0},
               {"beta": 16.0, "mean_reward": 0.8125, "max_reward": 0.9, "unique_fraction": 0.5}]
    assert format_summary(summary) == ("beta  mean_reward  max_reward  unique\n"
                                       "    1        0.250       0.500    1.00\n"
                                       "   16        0.812       0.900    0.50")
