"""compare reads eval.json honestly: the step it scored, stale marks, foreign files warn."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from lstmlab import compare

from fake_runs import make_run

CURVE = [(10, 1000, 3.0, 2.9), (20, 2000, 6.0, 2.4), (30, 3000, 9.0, 2.6)]  # best at step 20


def _with_eval(tmp_path, report) -> compare.RunRow:
    run = make_run(tmp_path, "r", valid=CURVE)
    (run / "eval.json").write_text(report if isinstance(report, str) else json.dumps(report))
    warnings: list[str] = []
    row = compare.read_run(run, warnings.append)
    row.warnings = warnings  # for the assertions below
    return row


def test_a_test_bpc_of_an_older_checkpoint_is_marked(tmp_path):
    row = _with_eval(tmp_path, {"step": 10, "splits": {"test": {"bpc": 2.5}}})
    assert (row.test_bpc, row.test_step, row.test_stale) == (2.5, 10, True)
    cells = dict(zip(compare.headers(), compare.text_cells(row)))
    assert cells["test final"] == "2.5000*"
    table = next(csv.DictReader(io.StringIO(compare.to_csv([row]))))
    assert float(table["test_bpc"]) == 2.5 and table["test_stale"] == "True"
    assert table["test_step"] == "10"
    data = json.loads(compare.to_json([row]))["runs"][0]
    assert data["test_stale"] is True and data["test_step"] == 10


@pytest.mark.parametrize("step", [20, 30])
def test_a_test_bpc_of_the_best_or_a_later_checkpoint_is_not_marked(tmp_path, step):
    row = _with_eval(tmp_path, {"step": step, "splits": {"test": {"bpc": 2.5}}})
    assert row.test_step == step and not row.test_stale
    assert dict(zip(compare.headers(), compare.text_cells(row)))["test final"] == "2.5000"


def test_an_eval_json_without_a_step_is_shown_unmarked(tmp_path):
    row = _with_eval(tmp_path, {"splits": {"test": {"bpc": 2.5}}})
    assert row.test_bpc == 2.5 and row.test_step is None and not row.test_stale


@pytest.mark.parametrize(
    "foreign", ["[1, 2]", '{"splits": 3}', '{"splits": {"test": {}}}', '"text"', '{"a": 1}']
)
def test_a_foreign_eval_json_warns_and_the_row_renders(tmp_path, foreign):
    row = _with_eval(tmp_path, foreign)
    assert row.test_bpc is None and len(row.warnings) == 1 and "eval.json" in row.warnings[0]
    assert compare.text_cells(row)  # still renders


def test_a_diverged_run_shows_infinite_perplexity(tmp_path):
    run = make_run(tmp_path, "d", valid=[], end=False)
    record = {"kind": "valid", "step": 10, "tokens": 1000, "elapsed_s": 1.0, "bpc": 5000.0}
    (run / "metrics.jsonl").write_text(json.dumps(record) + "\n")  # finite, 2^bpc is not
    (run / "eval.json").write_text(json.dumps({"step": 10, "splits": {"test": {"bpc": 1e6}}}))
    row = compare.read_run(run)
    assert row.test_perplexity == math.inf and row.valid_perplexity == math.inf
    assert compare.render([row], "markdown") and compare.to_csv([row])
