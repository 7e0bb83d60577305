"""Rendering helpers shared by the reports: the Jinja environment, number formats, atomic writes."""

from __future__ import annotations

import math
import os
import shutil
import uuid
from pathlib import Path

import jinja2
from markupsafe import Markup

from quality.reports.disclosure import HIDDEN_LABEL

TEMPLATES = Path(__file__).resolve().parent / "templates"
HIDDEN = HIDDEN_LABEL


def fmt_int(v) -> str:
    if v is None:
        return ""
    return f"{int(v):,}"


def fmt_float(v, decimals: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:,.{decimals}f}"


def fmt_pct(v, decimals: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{100 * v:.{decimals}f}%"


def fmt_change(v, decimals: int = 1, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    s = f"{100 * v:+.{decimals}f}%" if pct else f"{v:+,.{decimals}f}"
    return s


def cell(value, kind: str = "int", hidden: bool = False, decimals: int = 1) -> Markup:
    """A table cell for a number: the shown text, and its raw value in ``data-value`` (so that
    tests and scripts read exactly what is shown). A hidden count shows "s" and carries no value."""
    if hidden:
        return Markup('<td class="num hidden" data-hidden="1" title="not shown: a small count (see the '
                      f'disclosure rule), or one that would reveal such a count">{HIDDEN}</td>')
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Markup('<td class="num na"></td>')
    text = {"int": fmt_int, "float": lambda v: fmt_float(v, decimals), "pct": lambda v: fmt_pct(v, decimals),
            "change": lambda v: fmt_change(v, decimals), "change_pct": lambda v: fmt_change(v, decimals, True),
            "change_pts": lambda v: f"{100 * v:+.{decimals}f} pts"}[kind](value)
    raw = int(value) if kind == "int" else round(float(value), 6)
    return Markup(f'<td class="num" data-value="{raw}">{jinja2.utils.markupsafe.escape(text)}</td>')


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters.update(int=fmt_int, float=fmt_float, pct=fmt_pct, change=fmt_change)
    env.globals.update(cell=cell, HIDDEN=HIDDEN)
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` next to ``path`` then rename: a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def copy_atomic(src: Path, dst: Path) -> Path:
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst
