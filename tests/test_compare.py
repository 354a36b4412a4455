"""compare.py on synthetic run folders: reading, states, damage, sorting, every format, the plot."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.colors
import pytest

from lstmlab import compare, plot, runs
from lstmlab.errors import UsageError

from fake_runs import make_run, standard_runs
from support import REPO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_read_finished_run(tmp_path):
    run = make_run(
        tmp_path,
        "r",
        valid=[(10, 1000, 2.0, 3.0), (20, 2000, 5.0, 2.5), (30, 3000, 8.0, 2.7)],
        test_bpc=2.6,
        num_parameters=4321,
    )
    row = compare.read_run(run)
    assert (row.name, row.state, row.corpus, row.cells) == ("r", "finished", "tiny", "lstm")
    assert row.num_parameters == 4321
    assert (row.tokens, row.wall_s) == (3000, 8.0)
    assert row.tokens_per_s == pytest.approx(3000 / 8.0)
    assert (row.best_valid_bpc, row.best_step) == (2.5, 20)
    assert row.valid_perplexity == pytest.approx(2**2.5)
    assert row.test_bpc == 2.6 and row.perplexity == pytest.approx(2**2.6)
    assert row.stop_reason == "max_steps" and row.budget == "6 steps"
    assert [p["tokens"] for p in row.curve] == [1000, 2000, 3000]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _lock(run, pid, host=None, **extra):
    record = {"pid": pid, "host": host or socket.gethostname(), "started": time.time(), **extra}
    (run / runs.LOCK).write_text(json.dumps(record))
    return run


def test_states_come_from_the_lock(tmp_path):
    points = [(10, 1000, 1.0, 3.0)]

    def run(name, end=False):
        return make_run(tmp_path, name, valid=points, end=end)

    cases = {
        "running": _lock(run("running"), os.getppid()),
        "crashed": _lock(run("crashed"), _dead_pid()),
        "stopped": run("stopped"),
        "finished": run("finished", end=True),
        "remote": _lock(run("remote"), 1, host="elsewhere"),
        "stale": _lock(run("stale"), 1, host="elsewhere"),
        # the process reading the run cannot be training it at the same time
        "self": _lock(run("self"), os.getpid()),
        "failed": _lock(run("failed"), os.getppid(), failed="TrainingError: loss is nan"),
        "torn": run("torn"),
        # a pid that now names a process started after the lock was written
        "reused": _lock(run("reused"), os.getppid(), started=0.0),
        # an old marker of an earlier lstmlab means nothing now
        "legacy": run("legacy"),
    }
    (cases["torn"] / runs.LOCK).write_text("{")
    (cases["legacy"] / "running.json").write_text(json.dumps({"pid": os.getppid()}))
    old = time.time() - compare.STALE_S - 60
    for name in (runs.LOCK, "metrics.jsonl"):
        os.utime(cases["stale"] / name, (old, old))
    states = {name: compare.read_run(run).state for name, run in cases.items()}
    expected = {
        "running": "running",
        "crashed": "crashed",
        "stopped": "stopped",
        "finished": "finished",
        "remote": "running",
        "stale": "crashed",
        "self": "crashed",
        "failed": "failed",
        "torn": "crashed",
        "reused": "crashed" if Path("/proc/self/stat").exists() else "running",
        "legacy": "stopped",
    }
    assert states == expected
    failed = compare.read_run(cases["failed"])
    assert failed.stop_reason == "TrainingError: loss is nan"  # csv and json carry why


HOLDER = """
import sys, time
from lstmlab.runs import claim_run_dir
lock = claim_run_dir(sys.argv[1], force=False, resume=True, data_root=None)
print("claimed", flush=True)
time.sleep(120)
"""


def test_resumed_run_is_running_then_crashed_after_a_kill_never_finished(tmp_path):
    """Two real processes: a finished run resumed by another process, then killed."""
    run = make_run(tmp_path, "r", valid=[(10, 1000, 1.0, 3.0)], end=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"ckpt")
    assert compare.read_run(run).state == "finished"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().startswith("claimed")
        runs.truncate_metrics(run, 10)  # what a resume does first: the old `end` goes
        assert compare.read_run(run).state == "running"
    finally:
        proc.kill()
        proc.wait()
    assert compare.read_run(run).state == "crashed"
    lock = runs.claim_run_dir(run, force=False, resume=True, data_root=None)
    assert compare.read_run(run).state == "crashed"  # held by the reader itself
    runs.append_metrics(run, {"kind": "end", "step": 10})
    lock.release()
    assert compare.read_run(run).state == "finished"


def test_folder_means_every_run_sorted_by_valid_bpc(tmp_path):
    standard_runs(tmp_path / "zoo")
    make_run(tmp_path / "zoo", "fresh", valid=[], end=False)  # no validation yet: listed last
    (tmp_path / "zoo" / "notes").mkdir()  # not a run folder: ignored
    rows, warnings = compare.collect([tmp_path / "zoo"])
    assert [r.name for r in rows] == ["b", "c", "a", "fresh"] and warnings == []
    assert rows[-1].best_valid_bpc is None and rows[-1].state == "stopped"


def test_damaged_runs_warn_and_the_rest_render(tmp_path):
    runs = standard_runs(tmp_path)
    (runs["a"] / "config.yaml").write_bytes(b"\xff\xfe: [")
    (runs["c"] / "eval.json").write_text("{not json")
    with open(runs["b"] / "metrics.jsonl", "a") as f:
        f.write('{"kind": "valid", "step": 30, "bp')  # torn last line
    (runs["b"] / "checkpoints" / "best.pt").write_bytes(b"garbage")
    scrambled = make_run(tmp_path, "d", valid=[(10, 1000, 1.0, 2.0)])
    (scrambled / "metrics.jsonl").write_bytes(b"\x00\xff garbage\n[1, 2]\n")
    rows, warnings = compare.collect([tmp_path])
    assert [r.name for r in rows] == ["b", "c", "d"]
    assert len(warnings) == 3 and all("\n" not in w for w in warnings)
    assert "a" in warnings[0] and "config.yaml" in warnings[0]
    assert "eval.json" in warnings[1] and "metrics.jsonl" in warnings[2]
    assert rows[2].best_valid_bpc is None and rows[2].state == "stopped"
    assert rows[1].test_bpc is None and rows[1].best_valid_bpc == 2.4
    assert rows[0].best_valid_bpc == 2.2 and rows[0].num_parameters is None


def test_mixed_corpora_refused_unless_allowed(tmp_path):
    make_run(tmp_path, "p", valid=[(10, 1000, 1.0, 2.0)], corpus="ptb")
    make_run(tmp_path, "q", valid=[(10, 1000, 1.0, 2.5)], corpus="tiny")
    with pytest.raises(UsageError, match="different corpora.*ptb, tiny"):
        compare.collect([tmp_path])
    rows, _ = compare.collect([tmp_path], allow_mixed=True)
    assert [r.corpus for r in rows] == ["ptb", "tiny"]


def test_bad_paths_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        compare.find_runs([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="neither a run folder"):
        compare.find_runs([tmp_path / "empty"])


def test_json_and_csv_round_trip(tmp_path):
    rows, _ = compare.collect(standard_runs(tmp_path).values())
    data = json.loads(compare.render(rows, "json"))["runs"]
    assert [d["name"] for d in data] == ["b", "c", "a"]
    assert data[1]["test_bpc"] == 2.45 and data[1]["perplexity"] == pytest.approx(2**2.45)
    assert data[0]["num_parameters"] == 99 and len(data[0]["curve"]) == 2
    table = list(csv.DictReader(io.StringIO(compare.render(rows, "csv"))))
    assert [r["name"] for r in table] == ["b", "c", "a"]
    assert float(table[0]["best_valid_bpc"]) == 2.2 and table[0]["test_bpc"] == ""
    assert float(table[1]["tokens_per_s"]) == pytest.approx(3000 / 9.0)
    assert int(table[2]["best_step"]) == 20 and table[2]["state"] == "finished"


def test_markdown_is_a_table_with_the_best_row_bold(tmp_path):
    rows, _ = compare.collect(standard_runs(tmp_path).values())
    lines = compare.render(rows, "markdown").splitlines()
    table, (blank, note) = lines[: 2 + len(rows)], lines[2 + len(rows) :]
    widths = {line.count("|") for line in table}
    assert widths == {len(compare.COLUMNS) + 1}
    assert set(table[1].strip("|").split("|")) == {"---"}
    assert table[2].startswith("| **b** |") and "**2.2000**" in table[2]
    assert "**" not in table[3] and "2.4500" in table[3]
    assert blank == "" and note.startswith("final: each run's own budget")


def test_plot_has_one_line_per_run_on_both_axes(tmp_path):
    runs = standard_runs(tmp_path)
    make_run(tmp_path, "nocurve", valid=[], end=False)
    rows, _ = compare.collect([tmp_path])
    fig = plot.make_figure(rows)
    by_tokens, by_time = fig.axes
    assert len(by_tokens.lines) == len(by_time.lines) == 3 + 1  # and the common point
    c = next(line for line in by_tokens.lines if line.get_label() == "lstm (c)")
    assert list(c.get_xdata()) == pytest.approx([0.001, 0.002, 0.003])  # millions of tokens
    c_time = next(line for line in by_time.lines if line.get_label() == "lstm (c)")
    assert list(c_time.get_xdata()) == pytest.approx([3 / 60, 6 / 60, 9 / 60])
    assert list(c_time.get_ydata()) == [2.9, 2.4, 2.6]
    assert "tokens" in by_tokens.get_xlabel() and "minutes" in by_time.get_xlabel()
    assert "step time" in by_time.get_xlabel()
    assert "bits per character" in by_tokens.get_ylabel()
    legend = [t.get_text() for t in by_time.get_legend().get_texts()]
    assert sorted(legend) == ["equal time", "lstm (a)", "lstm (b)", "lstm (c)"]
    assert not by_tokens.collections  # single runs: no band

    out = plot.save_plot(rows, tmp_path / "plots" / "curves.png")
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[:2] == (400, 1000)
    assert runs  # the folders stay untouched
    with pytest.raises(UsageError, match="PNG"):
        plot.save_plot(rows, tmp_path / "curves.pdf")


def test_labels_are_cell_names_when_unique(tmp_path):
    make_run(tmp_path, "x", valid=[(10, 1000, 1.0, 2.0)])
    make_run(
        tmp_path,
        "y",
        valid=[(10, 1000, 1.0, 2.1)],
        cell={"blocks": [{"kind": "slstm", "hidden_dim": 8}, {"kind": "mlstm", "hidden_dim": 8}]},
    )
    rows, _ = compare.collect([tmp_path])
    labels = [line.get_label() for line in plot.make_figure(rows).axes[0].lines]
    assert labels == ["lstm", "slstm+mlstm", "equal tokens"]


def test_nothing_to_plot_is_a_usage_error(tmp_path):
    rows, _ = compare.collect([make_run(tmp_path, "fresh", valid=[], end=False)])
    with pytest.raises(UsageError, match="no run has a validation point"):
        plot.make_figure(rows)


def test_budget_text_and_cell_names():
    assert compare.budget_text({"max_minutes": 2.0}) == "2 min"
    assert (
        compare.budget_text({"max_epochs": 500, "max_steps": 10000}) == "500 epochs, 10,000 steps"
    )
    assert compare.budget_text({}) == "none"
    assert compare.cell_names({"cell": {"kind": "lstm", "hidden_dim": 4}}) == "lstm"
    assert (
        compare.cell_names({"blocks": [{"kind": "mlstm"}, {"kind": "slstm"}, {"kind": "mlstm"}]})
        == "mlstm+slstm"
    )


def test_context_note_names_corpus_budget_and_date(tmp_path):
    rows, _ = compare.collect(standard_runs(tmp_path).values())
    note = compare.context_note(rows)
    assert "corpus tiny" in note and "6 steps" in note and time.strftime("%Y-%m-%d") in note


def test_runs_of_one_recipe_group_over_seeds_with_mean_sd_and_resolution(tmp_path):
    import yaml

    from lstmlab.compare import collect, group_runs

    def run(name, seed, bpc, hidden=16):
        path = make_run(
            tmp_path, name, valid=[(10, 640, 1.0, bpc)], cell={"kind": "lstm", "hidden_dim": hidden}
        )
        config = yaml.safe_load((path / "config.yaml").read_text())
        config["seed"] = seed
        (path / "config.yaml").write_text(yaml.safe_dump(config))

    for seed, bpc in ((0, 2.00), (1, 2.02), (2, 1.98)):
        run(f"lstm-s{seed}", seed, bpc)
    for seed, bpc in ((0, 2.50), (1, 2.52), (2, 2.48)):
        run(f"wide-s{seed}", seed, bpc, hidden=32)
    for seed, bpc in ((0, 2.01), (1, 1.90)):
        run(f"close-s{seed}", seed, bpc, hidden=24)
    rows, _ = collect([tmp_path])
    groups = {g.name: g for g in group_runs(rows)}
    assert groups["lstm"].n == 3 and groups["lstm"].seeds == [0, 1, 2]
    assert groups["lstm"].valid_mean == pytest.approx(2.0) and groups[
        "lstm"
    ].valid_sd == pytest.approx(0.02)
    assert "wide" not in groups["lstm"].unresolved  # 0.5 bpc apart, sd 0.02: resolved
    assert "close" in groups["lstm"].unresolved  # within the spread of two seeds
    data = {g["name"]: g for g in json.loads(compare.to_json(rows))["groups"]}  # json has them
    assert data["lstm"]["n"] == 3 and data["lstm"]["valid_sd"] == pytest.approx(0.02)
    assert data["lstm"]["unresolved"] == ["close"] and data["lstm"]["judged_on"] == "final"


def test_a_run_written_before_a_new_field_groups_with_its_recipe(tmp_path):
    """config.yaml of an older lstmlab lacks fields added since; at their defaults it is the same recipe."""
    import yaml

    from lstmlab.compare import collect, group_runs
    from lstmlab.config import validate

    for seed in (0, 1):
        path = make_run(tmp_path, f"lstm-s{seed}", valid=[(10, 640, 1.0, 2.0 + seed / 10)])
        config = validate({**yaml.safe_load((path / "config.yaml").read_text()), "seed": seed})
        config = config.to_dict()
        if seed == 0:  # written before train.drop_state and model.dropout.mask existed
            del config["train"]["drop_state"], config["model"]["dropout"]["mask"]
        (path / "config.yaml").write_text(yaml.safe_dump(config))
    rows, _ = collect([tmp_path])
    (group,) = group_runs(rows)
    assert group.n == 2 and group.seeds == [0, 1]


def test_compare_prints_the_seed_groups_only_when_seeds_differ(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from lstmlab.cli.app import app

    for seed in (0, 1):
        path = make_run(tmp_path, f"lstm-s{seed}", valid=[(10, 640, 1.0, 2.0 + seed / 10)])
        config = yaml.safe_load((path / "config.yaml").read_text())
        (path / "config.yaml").write_text(yaml.safe_dump({**config, "seed": seed}))
    result = CliRunner().invoke(app, ["compare", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "by recipe over seeds" in result.output and "2.0500 ± 0.0707" in result.output


def test_every_run_is_read_at_equal_tokens_and_equal_step_time(tmp_path):
    """a validates to 2,000 tokens in 4 s, b to 2,000 in 2 s, c to 3,000 in 9 s (first at 3 s)."""
    rows, _ = compare.collect(standard_runs(tmp_path).values())
    by_name = {r.name: r for r in rows}
    assert {(r.equal_tokens, r.equal_step_s) for r in rows} == {(2000, 2.0)}
    assert by_name["c"].valid_at_tokens == 2.4  # its 2,000-token validation
    assert by_name["a"].valid_at_time == 3.0 and by_name["b"].valid_at_time == 2.2
    assert by_name["c"].valid_at_time is None  # first validated after 2 s: nothing to read

    make_run(tmp_path, "d", valid=[(10, 1000, 1.0, 3.0), (40, 4000, 4.0, 2.0)])
    make_run(tmp_path, "e", valid=[(25, 2500, 2.5, 2.3)])
    rows, _ = compare.collect([tmp_path / "d", tmp_path / "e"])
    d = next(r for r in rows if r.name == "d")
    assert (d.equal_tokens, d.equal_step_s) == (2500, 2.5)
    assert d.valid_at_tokens == pytest.approx(2.5) and d.valid_at_time == pytest.approx(2.5)


def test_every_format_names_the_budget_of_each_figure(tmp_path):
    rows, _ = compare.collect(standard_runs(tmp_path).values())
    assert {"valid final", "test final", "valid @tokens", "valid @time"} <= set(compare.headers())
    note = compare.budget_note(rows)
    assert "at 2,000 tokens" in note and "2.0 s of step time" in note and "interpolation" in note
    assert note in compare.render(rows, "markdown")
    table = {r["name"]: r for r in csv.DictReader(io.StringIO(compare.render(rows, "csv")))}
    assert table["c"]["equal_tokens"] == "2000" and table["c"]["equal_step_s"] == "2.0"
    assert table["c"]["valid_at_tokens"] == "2.4" and table["c"]["valid_at_time"] == ""
    data = json.loads(compare.render(rows, "json"))
    assert (data["equal_tokens"], data["equal_step_s"]) == (2000, 2.0)
    data = {d["name"]: d for d in data["runs"]}
    assert data["b"]["valid_at_time"] == 2.2 and data["b"]["equal_tokens"] == 2000
    assert "–" in compare.text_cells(next(r for r in rows if r.name == "c"))


def _seeded(root, name, seed, valid, max_steps=6, hidden=16):
    """A run of the recipe (hidden, max_steps) with `seed`."""
    import yaml

    path = make_run(root, name, valid=valid, cell={"kind": "lstm", "hidden_dim": hidden})
    config = yaml.safe_load((path / "config.yaml").read_text())
    config["seed"], config["train"]["max_steps"] = seed, max_steps
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def test_groups_are_judged_at_equal_tokens_when_budgets_differ(tmp_path):
    """Long runs end far lower, but at the short runs' 1,000 tokens the seeds overlap."""
    for seed, (early, late) in enumerate(((2.59, 2.00), (2.60, 2.01), (2.61, 1.99))):
        _seeded(
            tmp_path, f"long-s{seed}", seed, [(10, 1000, 1.0, early), (20, 2000, 2.0, late)], 20
        )
    for seed, bpc in enumerate((2.58, 2.60, 2.62)):
        _seeded(tmp_path, f"short-s{seed}", seed, [(10, 1000, 1.0, bpc)], 10, hidden=8)
    rows, _ = compare.collect([tmp_path])
    assert not compare.same_budget(rows)
    groups = {g.name: g for g in compare.group_runs(rows)}
    long = groups["long"]
    assert long.judged_on == "@tokens" and long.valid_mean == pytest.approx(2.0)
    assert long.at_tokens_mean == pytest.approx(2.60) and long.at_tokens_sd == pytest.approx(0.01)
    assert long.unresolved == ["short"] and groups["short"].unresolved == ["long"]
    assert "± 0.0100" in compare.group_cells(long)[4]
    assert "judged on valid @tokens" in compare.groups_note(list(groups.values()))

    markdown = compare.render(rows, "markdown")
    assert "| recipe | cell | n | valid final | valid @tokens |" in markdown
    assert "judged on valid @tokens" in markdown


def test_groups_are_judged_on_final_figures_under_one_budget(tmp_path):
    for seed, bpc in enumerate((2.00, 2.01, 1.99)):
        _seeded(tmp_path, f"a-s{seed}", seed, [(10, 1000, 1.0, 2.6), (20, 2000, 2.0, bpc)])
    for seed, bpc in enumerate((2.50, 2.51, 2.49)):
        _seeded(
            tmp_path, f"b-s{seed}", seed, [(10, 1000, 1.0, 2.6), (20, 2000, 2.0, bpc)], hidden=8
        )
    rows, _ = compare.collect([tmp_path])
    groups = compare.group_runs(rows)
    assert [g.name for g in groups] == ["a", "b"] and groups[0].judged_on == "final"
    assert groups[0].unresolved == [] and "judged on valid final" in compare.groups_note(groups)


def test_plot_draws_a_seed_band_per_recipe_and_the_common_points(tmp_path):
    seeds = {
        0: [(10, 1000, 1.0, 3.0), (20, 2000, 2.0, 2.0)],
        1: [(10, 1000, 1.5, 3.2), (15, 1500, 2.0, 2.6), (20, 2000, 3.0, 2.4)],
    }
    for seed, valid in seeds.items():
        _seeded(tmp_path, f"lstm-s{seed}", seed, valid)
    _seeded(tmp_path, "other", 0, [(10, 1200, 1.0, 2.9), (20, 1800, 1.8, 2.7)], hidden=8)
    rows, _ = compare.collect([tmp_path])
    assert [len(m) for m in plot.plot_groups(rows)] == [2, 1]
    by_tokens, by_time = plot.make_figure(rows).axes
    mean = next(line for line in by_tokens.lines if "2 seeds" in line.get_label())
    assert list(mean.get_xdata()) == pytest.approx([0.001, 0.0015, 0.002])
    assert list(mean.get_ydata()) == pytest.approx([3.1, (2.5 + 2.6) / 2, 2.2])
    (band,) = by_tokens.collections
    low, high = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
    assert low == pytest.approx(2.2 - math.sqrt(0.08)) and high == pytest.approx(3.1 + 0.1 * 2**0.5)
    assert tuple(band.get_facecolor()[0][:3]) == pytest.approx(
        matplotlib.colors.to_rgb(mean.get_color())
    )
    other = next(line for line in by_tokens.lines if line.get_label() == "lstm (other)")
    assert other.get_color() != mean.get_color()
    # equal tokens: 1,800 (other's end); equal time: 1.8 s
    (vline,) = [line for line in by_tokens.lines if line.get_label() == "equal tokens"]
    assert list(vline.get_xdata()) == pytest.approx([0.0018, 0.0018])
    (vline,) = [line for line in by_time.lines if line.get_label() == "equal time"]
    assert list(vline.get_xdata()) == pytest.approx([1.8 / 60, 1.8 / 60])
    time_mean = next(line for line in by_time.lines if "2 seeds" in line.get_label())
    assert list(time_mean.get_xdata()) == pytest.approx([1.5 / 60, 2.0 / 60])  # shared span
