"""Charts of the reports: Altair specifications rendered to inline SVG by vl-convert (offline).

Every function takes frames that already went through disclosure control (hidden counts are
null) and returns SVG text ready to inline in the HTML: no JavaScript, no CDN, nothing to fetch.
"""

from __future__ import annotations

import itertools
import re

import altair as alt
import polars as pl

FONT = "DejaVu Sans, Arial, sans-serif"
BLUE, ORANGE, GREY, RED = "#1f5fa8", "#e3771c", "#9aa4ad", "#b2182b"
SEX_COLORS = {"F": "#b5477a", "M": "#2c7fb8"}
_ids = itertools.count(1)


def _config(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    return (chart.configure(font=FONT, background="white")
            .configure_axis(labelFontSize=11, titleFontSize=12, grid=True, gridColor="#e6e6e6")
            .configure_legend(labelFontSize=11, titleFontSize=11, orient="top")
            .configure_title(fontSize=14, anchor="start")
            .configure_view(stroke=None))


def to_svg(chart: alt.TopLevelMixin) -> str:
    """Render with vl-convert; ids inside the SVG get a unique prefix so that several charts can
    live in one HTML document without clashing clip paths or gradients."""
    import vl_convert as vlc

    svg = vlc.vegalite_to_svg(_config(chart).to_dict())
    prefix = f"c{next(_ids)}-"
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', svg)
    svg = re.sub(r"^<\?xml[^>]*>\s*", "", svg)
    return svg.replace("<svg ", '<svg role="img" ', 1)


def _data(df: pl.DataFrame) -> alt.Data:
    # plain records: dates as ISO strings (Vega parses them), no pandas needed
    out = df.with_columns([pl.col(c).cast(pl.Utf8) for c, t in df.schema.items() if t in (pl.Date, pl.Datetime)])
    return alt.Data(values=out.to_dicts())


def epidemic_curve(daily: pl.DataFrame, title: str, week_start: str | None = None,
                   week_end: str | None = None) -> str:
    """Daily positive persons (bars) with the 7-day mean (line); ``daily``: jour, P (null =
    hidden), P_7d (7-day mean of the shown days, may be null)."""
    base = alt.Chart(_data(daily)).encode(x=alt.X("jour:T", title="date of specimen collection",
                                                  axis=alt.Axis(format="%d/%m", labelAngle=0)))
    bars = base.mark_bar(color=BLUE, opacity=0.75).encode(
        y=alt.Y("P:Q", title="positive persons"), tooltip=["jour:T", "P:Q"])
    line = base.mark_line(color=ORANGE, strokeWidth=2).encode(y="P_7d:Q")
    layers = [bars, line]
    if week_start and week_end:
        band = alt.Chart(_data(pl.DataFrame({"a": [week_start], "b": [week_end]}))).mark_rect(
            color="#ffe9a8", opacity=0.5).encode(x="a:T", x2="b:T")
        layers = [band, *layers]
    return to_svg(alt.layer(*layers).properties(width=760, height=240, title=title))


def weekly_trend(weekly: pl.DataFrame, title: str) -> str:
    """Weekly incidence per 100,000 (bars) and positivity (line, right axis); ``weekly``: week,
    incidence, positivity (null = hidden)."""
    base = alt.Chart(_data(weekly)).encode(x=alt.X("week:O", title="ISO week", axis=alt.Axis(labelAngle=-40)))
    bars = base.mark_bar(color=BLUE, opacity=0.8).encode(
        y=alt.Y("incidence:Q", title="incidence per 100,000", axis=alt.Axis(titleColor=BLUE)))
    line = base.mark_line(color=ORANGE, point=True, strokeWidth=2).encode(
        y=alt.Y("positivity:Q", title="positivity", axis=alt.Axis(format="%", titleColor=ORANGE)))
    return to_svg(alt.layer(bars, line).resolve_scale(y="independent").properties(width=760, height=220,
                                                                                 title=title))


def age_sex_bars(age_sex: pl.DataFrame, title: str) -> str:
    """Positive persons per age class and sex (grouped bars); ``age_sex``: age_label, order, sex, P."""
    chart = alt.Chart(_data(age_sex)).mark_bar().encode(
        x=alt.X("age_label:N", title="age class", sort=alt.SortField("order"), axis=alt.Axis(labelAngle=0)),
        xOffset="sex:N",
        y=alt.Y("P:Q", title="positive persons"),
        color=alt.Color("sex:N", title="sex", scale=alt.Scale(domain=list(SEX_COLORS), range=list(SEX_COLORS.values()))),
        tooltip=["age_label:N", "sex:N", "P:Q"],
    )
    return to_svg(chart.properties(width=760, height=220, title=title))


def age_incidence(ages: pl.DataFrame, title: str) -> str:
    """Incidence per 100,000 per age class, this week and the previous one; ``ages``: age_label,
    order, week, incidence."""
    chart = alt.Chart(_data(ages)).mark_bar().encode(
        x=alt.X("age_label:N", title="age class", sort=alt.SortField("order"), axis=alt.Axis(labelAngle=0)),
        xOffset="week:N",
        y=alt.Y("incidence:Q", title="incidence per 100,000"),
        color=alt.Color("week:N", title="week", scale=alt.Scale(range=[GREY, BLUE])),
        tooltip=["age_label:N", "week:N", alt.Tooltip("incidence:Q", format=".1f")],
    )
    return to_svg(chart.properties(width=760, height=200, title=title))


HIDDEN_WEEK = "count not shown (statistical secrecy)"
HIDDEN_WEEK_NOTE = "Grey band: a week whose count is not shown (statistical secrecy); it has no bar."


def small_multiples(series: pl.DataFrame, title: str, weeks: list[str] | None = None) -> str:
    """Weekly cases per disease, one small panel each; ``series``: disease, week, cases (null =
    hidden). The x axis holds every week of ``weeks`` (default: the weeks of ``series``) in every
    panel: Vega-Lite drops a row whose value is null, so without an explicit domain a week hidden
    in every panel left the axis and the panels read "0 cases" (QA numbers F3). A hidden week is
    drawn as a grey band over the panel's height, with no bar, and the chart says so (subtitle and
    legend)."""
    weeks = sorted(set(series["week"].to_list())) if weeks is None else list(weeks)
    data = series.with_columns(pl.when(pl.col("cases").is_null()).then(pl.lit(HIDDEN_WEEK)).alias("shown"))
    x = alt.X("week:O", title=None, scale=alt.Scale(domain=weeks),
              axis=alt.Axis(labelAngle=-60, labelFontSize=9))
    base = alt.Chart().encode(x=x)
    bars = base.mark_bar(color=BLUE).encode(
        y=alt.Y("cases:Q", title="cases"), tooltip=["disease:N", "week:O", "cases:Q"],
    ).transform_filter("isValid(datum.cases)")
    layers = [bars]
    if data["shown"].null_count() < data.height:
        hidden = base.mark_rect(opacity=0.45).encode(
            color=alt.Color("shown:N", title=None, scale=alt.Scale(domain=[HIDDEN_WEEK], range=[GREY]),
                            legend=alt.Legend(labelLimit=400)),
            tooltip=["disease:N", "week:O", alt.Tooltip("shown:N", title="cases")],
        ).transform_filter("!isValid(datum.cases)")
        layers = [hidden, bars]
    chart = alt.layer(*layers, data=_data(data)).properties(width=220, height=110).facet(
        facet=alt.Facet("disease:N", title=None), columns=3)
    subtitle = [HIDDEN_WEEK_NOTE] if len(layers) > 1 else []
    return to_svg(chart.resolve_scale(y="independent").properties(
        title=alt.TitleParams(title, subtitle=subtitle, subtitleFontSize=11, subtitleColor="#555")))


def hbar(df: pl.DataFrame, label: str, value: str, title: str, x_title: str, fmt: str = ",.0f",
         color: str = BLUE, width: int = 620) -> str:
    """Horizontal bars, sorted by value."""
    chart = alt.Chart(_data(df)).mark_bar(color=color).encode(
        y=alt.Y(f"{label}:N", title=None, sort="-x"),
        x=alt.X(f"{value}:Q", title=x_title, axis=alt.Axis(format=fmt)),
        tooltip=[f"{label}:N", alt.Tooltip(f"{value}:Q", format=fmt)],
    )
    height = max(60, 18 * df.height)
    return to_svg(chart.properties(width=width, height=height, title=title))


def stacked_bars(df: pl.DataFrame, x: str, y: str, color: str, title: str, x_title: str, y_title: str,
                 x_type: str = "T", x_format: str | None = "%d/%m") -> str:
    axis = alt.Axis(format=x_format, labelAngle=0) if x_format else alt.Axis(labelAngle=-30)
    chart = alt.Chart(_data(df)).mark_bar().encode(
        x=alt.X(f"{x}:{x_type}", title=x_title, axis=axis, **({"scale": alt.Scale(paddingInner=0.3)} if x_type == "N" else {})),
        y=alt.Y(f"{y}:Q", title=y_title, stack=True),
        color=alt.Color(f"{color}:N", title=None, scale=alt.Scale(scheme="tableau10")),
        tooltip=[f"{x}:{x_type}", f"{color}:N", f"{y}:Q"],
    )
    return to_svg(chart.properties(width=760, height=240, title=title))


def delay_ranges(delays: pl.DataFrame, title: str, legs: list[str]) -> str:
    """Per lab and leg: the p10-p90 range (rule) and the median (tick), in hours;
    ``delays``: source, leg, h_p10, h_p50, h_p90."""
    base = alt.Chart(_data(delays)).encode(y=alt.Y("source:N", title=None))
    rule = base.mark_rule(strokeWidth=6, opacity=0.45, color=BLUE).encode(
        x=alt.X("h_p10:Q", title="hours (p10 - p90, median)"), x2="h_p90:Q")
    tick = base.mark_tick(color=RED, thickness=3, size=16).encode(
        x="h_p50:Q", tooltip=["source:N", "leg:N", alt.Tooltip("h_p50:Q", format=".1f")])
    chart = alt.layer(rule, tick).properties(width=230, height=alt.Step(22)).facet(
        column=alt.Column("leg:N", title=None, sort=legs))
    return to_svg(chart.resolve_scale(x="independent").properties(title=title))


def heatmap(df: pl.DataFrame, x: str, y: str, value: str, title: str, fmt: str = ".0%") -> str:
    chart = alt.Chart(_data(df)).mark_rect().encode(
        x=alt.X(f"{x}:N", title=None, axis=alt.Axis(labelAngle=-30)),
        y=alt.Y(f"{y}:N", title=None),
        color=alt.Color(f"{value}:Q", title=None, scale=alt.Scale(scheme="blues"), legend=alt.Legend(format=fmt)),
        tooltip=[f"{x}:N", f"{y}:N", alt.Tooltip(f"{value}:Q", format=fmt)],
    )
    return to_svg(chart.properties(width=alt.Step(70), height=alt.Step(22), title=title))
