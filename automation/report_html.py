"""The report as one self-contained HTML page: tables, and charts drawn with matplotlib.

matplotlib is the optional extra `report` (numpy and Pillow come with it: some 60 MB a worker
that only polls never needs); it is imported here only, when a page is drawn. Charts are PNGs
embedded as base64 `data:` URLs, so the page needs no file beside it and nothing in it is
markup we did not escape; customer text (subjects, organizations, names) is in the tables,
autoescaped by Jinja2.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import jinja2

from automation.config import FederalConfig
from automation.errors import InputError
from automation.report import Report, gather, minutes, share

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from automation.zendesk import Zendesk

INSTALL_HINT = "pip install 'emergency-automation[report]'"
SERVED_WINDOW = timedelta(days=30)  # the status page's report: the last 30 days
# Time-to-contact buckets for the distribution, in minutes (the last one is open).
BUCKETS = (1, 2, 5, 10, 15, 20, 30, 60)
GREEN, AMBER, RED, GREY = "#2e7d32", "#f9a825", "#c62828", "#607d8b"


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def require_matplotlib() -> None:
    """Say in one line how to install the charts' library when it is missing."""
    if not has_matplotlib():
        raise InputError("the HTML report draws its charts with matplotlib, which is not "
                         f"installed: {INSTALL_HINT}")


def render_html(report: Report, title: str = "Emergency report", home: str | None = None,
                charts_required: bool = True) -> str:
    """The whole page, every chart inside it; ``home`` links back to the status page.
    Without matplotlib: an InputError, or (``charts_required`` false) the page without its
    charts, saying how to install them."""
    if charts_required:
        require_matplotlib()
    charts = has_matplotlib()
    pages = jinja2.Environment(loader=jinja2.PackageLoader("automation", "web"),
                               autoescape=True, undefined=jinja2.StrictUndefined)
    pages.filters["minutes"] = minutes
    pages.filters["share"] = share
    return pages.get_template("report.html").render(
        report=report, title=title, home=home, install_hint=INSTALL_HINT,
        distribution=_png(distribution_chart(report)) if charts else None,
        trend=_png(trend_chart(report)) if charts else None)


def served_page(zendesk: Zendesk, now: datetime, federal: FederalConfig | None = None) -> str:
    """The status page's report view: the last 30 days, charts if matplotlib is there."""
    report = gather(zendesk, now - SERVED_WINDOW, now, federal)
    return render_html(report, title="Emergencies of the last 30 days", home="./",
                       charts_required=False)


def bucket_counts(report: Report) -> list[tuple[str, int]]:
    """How many emergencies were contacted within each bucket of minutes."""
    labels = [f"< {BUCKETS[0]}"] + [f"{low}–{high}" for low, high in zip(BUCKETS, BUCKETS[1:],
                                                                          strict=False)]
    labels.append(f"≥ {BUCKETS[-1]}")
    counts = [0] * len(labels)
    for emergency in report.emergencies:
        ttc = emergency.time_to_contact
        if ttc is None:
            continue
        mins = ttc.total_seconds() / 60
        counts[sum(mins >= edge for edge in BUCKETS)] += 1
    return list(zip(labels, counts, strict=True))


def distribution_chart(report: Report) -> Figure:
    """Bars of emergencies by time to contact: green within 5 minutes, amber within 15."""
    from matplotlib.figure import Figure

    buckets = bucket_counts(report)
    figure = Figure(figsize=(7, 3), dpi=100, layout="constrained")
    axes = figure.subplots()
    colors = [GREEN if i < 3 else AMBER if i < 5 else RED for i in range(len(buckets))]
    axes.bar([label for label, _ in buckets], [count for _, count in buckets], color=colors)
    overall = report.overall
    axes.set_title(f"Time to contact (minutes): p50 {minutes(overall.p50)}, "
                   f"p90 {minutes(overall.p90)}", fontsize=11)
    axes.set_ylabel("emergencies")
    _plain(axes)
    return figure


def trend_chart(report: Report) -> Figure:
    """Per week: emergencies (bars), and the p50 and p90 of time to contact (lines)."""
    from matplotlib.figure import Figure

    weeks = [f.label.split("-")[1] for f in report.by_week]
    figure = Figure(figsize=(7, 4), dpi=100, layout="constrained")
    count_axes, time_axes = figure.subplots(2, 1, sharex=True, height_ratios=(1, 1.4))
    count_axes.bar(weeks, [f.emergencies for f in report.by_week], color=GREY)
    count_axes.set_ylabel("emergencies")
    count_axes.set_title("Week by week", fontsize=11)
    for label, values, color in (
            ("p50", [_in_minutes(f.p50) for f in report.by_week], GREEN),
            ("p90", [_in_minutes(f.p90) for f in report.by_week], RED)):
        time_axes.plot(weeks, values, marker="o", color=color, label=f"{label} time to contact")
    time_axes.set_ylabel("minutes")
    time_axes.set_ylim(bottom=0)
    time_axes.legend(loc="upper left", fontsize=8, frameon=False)
    for axes in (count_axes, time_axes):
        _plain(axes)
    return figure


def _in_minutes(delta: timedelta | None) -> float:
    return delta.total_seconds() / 60 if delta is not None else float("nan")


def _plain(axes: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.grid(axis="y", alpha=0.3)


def _png(figure: Figure) -> str:
    """The figure as a `data:` URL (PNG, Agg: no display, no pyplot state)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

