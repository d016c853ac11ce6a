"""CSV and PNG of a report, from the same table as its JSON.

CSV: UTF-8 with a BOM and `;` between fields, Russian headers and decimal commas, which is what Excel in
a Russian locale opens correctly by double-click. PNG: matplotlib's Agg backend (no display needed) in
DejaVu Sans (it has Cyrillic), 1200×700 px; the table the bars were drawn from is embedded as the PNG's
`Description` text so anyone can check the picture's numbers against the CSV.

matplotlib is imported, and its font found, on the first chart or by `warm_up()`, not with this module:
that is ≈ 0.16 s of every process that imports the reports (rq workers, the CLI, the scheduler), and only
the web process draws. gunicorn's `post_worker_init` hook (widget_server/gunicorn_conf.py) warms each web
worker up before its first request, so a worker's first 12-month PNG does not pay it either.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from decimal import Decimal
from types import ModuleType
from typing import Any

from .builders import Report

__all__ = ["PNG_SIZE", "chart_table", "report_csv", "report_png", "warm_up"]

PNG_SIZE = (1200, 700)
_DPI = 100


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return str(value).replace(".", ",")
    return str(value)


def report_csv(report: Report) -> str:
    """The CSV text including its leading BOM."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow([title for _, title in report.columns])
    for row in [*report.rows, *report.totals]:
        writer.writerow([_cell(row.get(key)) for key, _ in report.columns])
    return "\ufeff" + out.getvalue()


def chart_table(report: Report) -> dict[str, Any]:
    """What the picture shows: labels and, per series, the values of the total rows (or per period)."""
    chart = report.chart
    rows = report.rows if chart.label == "period" else report.totals
    titles = dict(report.columns)
    return {
        "report": report.name,
        "labels": [str(row[chart.label]) for row in rows],
        "series": {titles[key]: [row[key] for row in rows] for key in chart.series},
    }


@functools.cache
def _matplotlib() -> tuple[ModuleType, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib.figure import Figure

    # Finding the font builds matplotlib's font cache lookup: half of a first chart's time.
    font_manager.findfont("DejaVu Sans")
    return matplotlib, Figure


def warm_up() -> None:
    """Load matplotlib and its font now (a web worker after fork), so the first PNG does not. A tiny chart
    is drawn too: the first draw loads the Agg canvas, reads the font file and the PNG writer, a third of
    a first chart's time after the imports."""
    matplotlib, Figure = _matplotlib()
    figure = Figure(figsize=(1, 1), dpi=10)
    with matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        axes = figure.add_subplot()
        axes.bar_label(axes.bar([0], [1], label="й"), labels=["1"])
        axes.set_title("й")
        axes.legend()
        figure.savefig(io.BytesIO(), format="png")


def report_png(report: Report) -> bytes:
    matplotlib, Figure = _matplotlib()
    table = chart_table(report)
    figure = Figure(figsize=(PNG_SIZE[0] / _DPI, PNG_SIZE[1] / _DPI), dpi=_DPI)
    with matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        axes = figure.add_subplot()
        labels = table["labels"]
        positions = list(range(len(labels)))
        series = list(table["series"].items())
        width = 0.8 if report.chart.stacked else 0.8 / max(len(series), 1)
        bottoms = [0] * len(labels)
        for index, (title, values) in enumerate(series):
            if report.chart.stacked:
                bars = axes.bar(positions, values, width, bottom=bottoms, label=title)
                bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
            else:
                shifted = [p + (index - (len(series) - 1) / 2) * width for p in positions]
                bars = axes.bar(shifted, values, width, label=title)
            texts = [str(v) if v else "" for v in values]
            axes.bar_label(bars, labels=texts, label_type="center", fontsize=8)
        axes.set_xticks(positions, labels, rotation=30 if len(labels) > 6 else 0, ha="right", fontsize=8)
        axes.set_title(
            f"{report.title}: {report.period.start:%d.%m.%Y} – {report.period.end:%d.%m.%Y}", fontsize=13
        )
        if series:
            axes.legend(fontsize=9)
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(
            out, format="png", dpi=_DPI,
            metadata={"Title": report.title, "Description": json.dumps(table, ensure_ascii=False)},
        )  # fmt: skip
    return out.getvalue()
