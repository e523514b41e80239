"""The report's charts: matplotlib figures rendered to inline SVG (text kept as text, no
external resources), one function per chart."""

from __future__ import annotations

import io
import re

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from reports.summary import GROUP, backends_of
from results import BACKEND_ORDER, BOOT_PHASES, SECONDS, backends_in_order, scale_of

# one hue per group of the spectrum (summary.GROUP), a shade per backend within it
HUES = {"host": ("#4d4d4d", "#969696"), "container": ("#1f77b4", "#6baed6", "#08519c", "#9ecae1"),
        "engine": ("#2ca02c", "#98df8a"), "sandbox": ("#9467bd",),
        "system-container": ("#ff7f0e",), "VM": ("#d62728",), "container-in-VM": ("#e377c2",)}
COLOURS = {backend: HUES[group][[b for b in BACKEND_ORDER if GROUP.get(b) == group].index(backend)
                                % len(HUES[group])]
           for backend, group in GROUP.items() if backend in BACKEND_ORDER}


def _seconds(value: float, _position: object = None) -> str:
    factor, shown = scale_of(value, SECONDS)
    return f"{value * factor:g} {shown}"


plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "figure.dpi": 100,
                     "svg.hashsalt": "vmvc"})


def to_svg(fig: plt.Figure) -> str:
    """The figure as an <svg> element for inline HTML (no XML prolog or DOCTYPE)."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF boilerplate
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def _time_strip(fig: plt.Figure, ax: plt.Axes, rows: list[str], xlabel: str) -> str:
    """The startup and burst strips' axes: seconds on a log scale, one row per label."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_seconds))
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8,
              frameon=False)
    return to_svg(fig)


def startup_strip(frame: pd.DataFrame) -> str | None:
    """Every startup value per backend, log scale: to exit of `true` and to first line."""
    part = frame[frame["metric"] == "startup"]
    if part.empty:
        return None
    backends = backends_of(part)
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.45 * len(backends)))
    for offset, (workload, marker) in (( -0.12, ("true", "o")), (0.12, ("ready", "^"))):
        for i, backend in enumerate(backends):
            row = part[(part["backend"] == backend) & (part["workload"] == workload)]
            if row.empty:
                continue
            values = row.iloc[0]["values"]
            ax.scatter(values, [i + offset] * len(values), marker=marker, s=14, alpha=0.6,
                       color=COLOURS.get(backend, "#777"),
                       label=f"to {'exit of true' if workload == 'true' else 'first line'}"
                       if i == 0 else None)
            ax.plot([row.iloc[0]["median"]] * 2, [i + offset - 0.1, i + offset + 0.1],
                    color="black", linewidth=1.5)
    return _time_strip(fig, ax, backends, "time from start requested (log scale; bar: median)")


def burst(frame: pd.DataFrame) -> str | None:
    """N instances requested at once, per burst size and backend: each instance's own
    start time (dots) and the time until all were up (bar: median over bursts), log scale."""
    part = frame[frame["metric"] == "burst"]
    if part.empty:
        return None
    sizes = sorted({int(w.split(".")[0][1:]) for w in part["workload"]})
    rows = [(n, b) for n in sizes for b in backends_of(part)
            if not part[(part["workload"] == f"x{n}") & (part["backend"] == b)].empty]
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.4 * len(rows)))
    for i, (n, backend) in enumerate(rows):
        colour = COLOURS.get(backend, "#777")
        each = part[(part["workload"] == f"x{n}.each") & (part["backend"] == backend)]
        if not each.empty:
            values = each.iloc[0]["values"]
            ax.scatter(values, [i] * len(values), s=12, alpha=0.5, color=colour,
                       label="each instance up" if i == 0 else None)
        done = part[(part["workload"] == f"x{n}") & (part["backend"] == backend)].iloc[0]
        ax.plot([done["median"]] * 2, [i - 0.3, i + 0.3], color="black", linewidth=1.8,
                label="all up (median)" if i == 0 else None)
    return _time_strip(fig, ax, [f"{b}, N={n}" for n, b in rows],
                       "time from all N requested at once (log scale)")


def boot_phases(frame: pd.DataFrame) -> str | None:
    """Each booting backend's start as a stacked bar: the median time spent in each phase
    (the seconds in the legend when one backend boots, on the bars' ends otherwise)."""
    part = frame[frame["metric"] == "boot-phase"]
    if part.empty:
        return None
    backends = backends_of(part)
    shown = [p for p in BOOT_PHASES if p in set(part["workload"])]
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.4 * len(backends)))
    cmap = plt.get_cmap("Reds")
    labelled: set[str] = set()
    for row, backend in enumerate(backends):
        ends = part[part["backend"] == backend].set_index("workload")["median"]
        left = 0.0
        for i, phase in enumerate(shown):
            if phase not in ends.index:
                continue
            end = float(ends[phase])
            label = (f"{phase} ({end:.2f} s)" if len(backends) == 1 else phase) \
                if phase not in labelled else None
            labelled.add(phase)
            ax.barh([row], [max(end - left, 0.0)], left=left, edgecolor="white", label=label,
                    color=cmap(0.3 + 0.6 * i / max(len(shown) - 1, 1)))
            left = max(left, end)
        if len(backends) > 1:
            ax.text(left, row, f" {left:.2f} s", va="center", fontsize=8)
    ax.set_yticks(range(len(backends)), backends if len(backends) > 1 else [""])
    ax.invert_yaxis()
    ax.set_xlabel("seconds from create requested (medians)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.55), ncol=3, fontsize=8,
              frameon=False)
    return to_svg(fig)


def idle_memory(frame: pd.DataFrame) -> str | None:
    part = frame[(frame["metric"] == "memory") & (frame["workload"] == "idle")]
    if part.empty:
        return None
    backends = backends_of(part)
    medians = [float(part[part["backend"] == b].iloc[0]["median"]) / 2**20 for b in backends]
    fig, ax = plt.subplots(figsize=(9, 0.6 + 0.45 * len(backends)))
    ax.barh(backends, medians, color=[COLOURS.get(b, "#777") for b in backends])
    for i, value in enumerate(medians):
        ax.text(value, i, f" {value:.3g} MiB", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(medians) * 4)
    ax.invert_yaxis()
    ax.set_xlabel("host memory of one idle instance, MiB (log scale)")
    return to_svg(fig)


def density(frame: pd.DataFrame) -> str | None:
    part = frame[frame["metric"] == "density"]
    if part.empty:
        return None
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for _, row in part.iterrows():
        points = sorted((n, sum(v) / len(v)) for n, v in row["runs"] if n is not None)
        if not points:
            continue
        xs, ys = [p[0] for p in points], [p[1] / 2**20 for p in points]
        slope = (row["slope"] or 0) / 2**20
        error = row["slope_stderr"]
        margin = "" if error is None or pd.isna(error) else f" ± {2 * error / 2**20:.2g}"
        ax.plot(xs, ys, marker="o", color=COLOURS.get(row["backend"], "#777"),
                label=f"{row['backend']}: {slope:.3g}{margin} MiB per instance")
    ax.set_xlabel("idle instances (N)")
    ax.set_ylabel("host memory taken by the N instances, MiB")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_svg(fig)


def _latency_rows(frame: pd.DataFrame) -> pd.Series:
    """A service's latency figures: cost rows of a figure (``<workload>.<figure>``) in
    seconds; they are drawn as percentile curves, not as bars."""
    return (frame["metric"] == "cost") & frame["workload"].str.contains(".", regex=False) & \
        (frame["unit"] == SECONDS)


PERCENTILE_ORDER = ("p50", "p95", "p99", "p999", "max")


def _percentile_key(figure: str) -> tuple[int, str]:
    """p50 < p99 < p999 < max, whatever prefix (``get_p99``) the figure has."""
    for rank, name in enumerate(PERCENTILE_ORDER):
        if figure == name or figure.endswith(f"_{name}"):
            return rank, figure
    return len(PERCENTILE_ORDER), figure


def service_latency(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Per service workload, its latency percentiles with every backend on one chart, on a
    log axis (an HDR-style percentile plot); (workload, svg) pairs."""
    part = frame[_latency_rows(frame)]
    charts = []
    for service in sorted({w.split(".")[0] for w in part["workload"]}):
        rows = part[part["workload"].str.startswith(f"{service}.")]
        def group(figure: str) -> str:  # http's small_p99 and large_p99: two curves
            return figure.rsplit("_", 1)[0] if "_" in figure else ""

        figures = sorted({w.split(".", 1)[1] for w in rows["workload"]},
                         key=lambda f: (group(f), _percentile_key(f)))
        groups = sorted({group(f) for f in figures})
        fig, ax = plt.subplots(figsize=(7, 2.8))
        for backend in backends_in_order(rows["backend"]):
            for curve in groups:
                xs, ys = [], []
                for i, figure in enumerate(figures):
                    if group(figure) != curve:
                        continue
                    cell = rows[(rows["backend"] == backend)
                                & (rows["workload"] == f"{service}.{figure}")]
                    if not cell.empty:
                        xs.append(i)
                        ys.append(float(cell.iloc[0]["median"]))
                if xs:
                    ax.plot(xs, ys, marker="o", color=COLOURS.get(backend, "#777"),
                            label=backend if curve == groups[0] else None)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_seconds))
        ax.set_xticks(range(len(figures)), figures, fontsize=8)
        ax.set_ylabel("latency (median of the runs)")
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8, ncol=6, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  frameon=False)
        charts.append((service, to_svg(fig)))
    return charts


def isolation_cost(frame: pd.DataFrame) -> str | None:
    """Per workload, each backend's mean over bare's, the spread of its values as error
    bars; the bars say which way is better. Services' latencies have their own charts."""
    part = frame[(frame["metric"] == "cost") & ~_latency_rows(frame)]
    if part.empty or "bare" not in set(part["backend"]):
        return None
    workloads = sorted(set(part["workload"]))
    backends = backends_in_order(part["backend"])
    width = 0.8 / len(backends)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for j, backend in enumerate(backends):
        xs, ys, errs = [], [], []
        for i, workload in enumerate(workloads):
            rows = part[(part["workload"] == workload)]
            bare = rows[rows["backend"] == "bare"]
            mine = rows[rows["backend"] == backend]
            if bare.empty or mine.empty:
                continue
            base = float(bare.iloc[0]["mean"])
            xs.append(i + (j - (len(backends) - 1) / 2) * width)
            ys.append(float(mine.iloc[0]["mean"]) / base)
            errs.append(float(mine.iloc[0]["stdev"]) / base)
        ax.bar(xs, ys, width=width, yerr=errs, capsize=2, label=backend,
               color=COLOURS.get(backend, "#777"))
    labels = []
    for workload in workloads:
        better = part[part["workload"] == workload].iloc[0]["better"]
        labels.append(f"{workload}\n({better} is better)")
    ax.set_xticks(range(len(workloads)), labels, fontsize=8)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("figure / bare's figure")
    ax.legend(fontsize=8, ncol=len(backends), loc="upper center", bbox_to_anchor=(0.5, -0.25),
              frameon=False)
    return to_svg(fig)


def cost_vs_isolation(view: dict | None) -> str | None:
    """Two panels, one point per backend in its group's colour: startup, and one idle
    instance's PSS, against the audit's checks passed (isolation to the right, cost up)."""
    if view is None:
        return None
    panels = [("startup", "startup to the exit of true", SECONDS),
              ("memory", "PSS of one idle instance", "bytes")]
    panels = [p for p in panels if any(r[p[0]] for r in view["rows"])]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, (key, title, unit) in zip(axes[0], panels, strict=True):
        rows = [r for r in view["rows"] if r[key]]
        factor, shown = scale_of(max(r[key] for r in rows), unit)
        for row in rows:
            ax.scatter([row["passed"]], [row[key] * factor], s=40,
                       color=COLOURS.get(row["backend"], "#777"), zorder=3)
            ax.annotate(row["backend"], (row["passed"], row[key] * factor), fontsize=8,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlim(-0.5, view["total"] + 1.5)
        ax.set_xlabel(f"isolation checks passed (of {view['total']})")
        ax.set_ylabel(f"{title} ({shown})")
        ax.grid(True, which="major", alpha=0.3)
    return to_svg(fig)
