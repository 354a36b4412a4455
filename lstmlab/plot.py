"""The learning-curve figure of `lstmlab compare --plot`: valid bpc against tokens and time.

Rows come from `compare.collect`. A recipe trained with several seeds is drawn as
its mean curve with a ± sd band (`curves.band`), any other run as its own line;
each panel marks its common point (equal tokens, equal step time). Matplotlib is
imported only here, and only through `Figure` (no pyplot state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lstmlab import compare, curves
from lstmlab.compare import RunRow
from lstmlab.errors import UsageError


def curve_label(row: RunRow, rows: Sequence[RunRow]) -> str:
    """The cell name, or cell + run name when several runs share a cell."""
    shared = sum(r.cells == row.cells for r in rows) > 1
    return f"{row.cells} ({row.name})" if shared else str(row.cells)


def plot_groups(rows: Sequence[RunRow]) -> list[list[RunRow]]:
    """Rows to draw together: a recipe's runs when it has several seeds, else each run alone."""
    drawn: list[list[RunRow]] = []
    for members in compare.by_recipe(rows):
        several_seeds = len({r.seed for r in members}) > 1
        drawn += [members] if several_seeds else [[r] for r in members]
    return drawn


def _group_label(members: list[RunRow], drawn: list[list[RunRow]]) -> str:
    """Like `curve_label`, with n and the recipe name when a cell appears more than once."""
    first = members[0]
    if len(members) == 1:
        return curve_label(first, [m[0] for m in drawn])
    shared = sum(m[0].cells == first.cells for m in drawn) > 1
    name = f"{compare.group_name(first.name)}, " if shared else ""
    return f"{first.cells} ({name}mean ± sd of {len(members)} seeds)"


# the two panels: curve axis, the row field of its common point, x scale, x label
PANELS = (
    ("tokens", "equal_tokens", 1e-6, "training tokens seen (millions)"),
    ("elapsed_s", "equal_step_s", 1 / 60, "training step time (minutes; validation not counted)"),
)


def make_figure(rows: Sequence[RunRow]):
    """Valid bpc against tokens seen and against step time: one line per run, or for a recipe
    with several seeds its mean on a common grid with a ± sd band; a dashed line at each
    panel's common point (equal tokens, equal time)."""
    from matplotlib import rcParams
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry

    plotted = [r for r in rows if r.curve]
    if not plotted:
        raise UsageError(
            "no run has a validation point to plot",
            hint="let runs reach train.eval_every or their budget first",
        )
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    colours = rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = plot_groups(plotted)
    for index, members in enumerate(drawn):
        label, colour = _group_label(members, drawn), colours[index % len(colours)]
        for ax, (axis, _field, scale, _xlabel) in zip(axes, PANELS):
            _draw(ax, [curves.points(r.curve, axis) for r in members], scale, label, colour)
    for ax, (_axis, attr, scale, xlabel) in zip(axes, PANELS):
        point = getattr(plotted[0], attr)
        if point is not None and len(drawn) > 1:
            name = "equal tokens" if attr == "equal_tokens" else "equal time"
            ax.axvline(point * scale, color="grey", linestyle="--", linewidth=1, label=name)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("validation bits per character")
    axes[1].legend(title="cell", fontsize="small")
    corpora = ", ".join(sorted({r.corpus or "?" for r in plotted}))
    fig.suptitle(f"Learning curves on {corpora}")
    return fig


def _draw(ax, runs_points: list[list[curves.Point]], scale: float, label: str, colour) -> None:
    """One run's curve, or the mean and ± sd band of several (each alone if they share no span)."""
    grid, mean, sd = curves.band(runs_points) if len(runs_points) > 1 else ([], [], [])
    if not grid:
        for index, pts in enumerate(runs_points):
            xs, ys = [x * scale for x, _ in pts], [y for _, y in pts]
            ax.plot(xs, ys, marker=".", color=colour, label=label if index == 0 else None)
        return
    xs = [x * scale for x in grid]
    ax.plot(xs, mean, marker=".", color=colour, label=label)
    low, high = [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)]
    ax.fill_between(xs, low, high, color=colour, alpha=0.2, linewidth=0)


def save_plot(rows: Sequence[RunRow], path: Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"--plot {path}: the plot is written as PNG", hint="name it *.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    make_figure(rows).savefig(path, format="png")
    return path


__all__ = ["curve_label", "make_figure", "plot_groups", "save_plot"]
