"""Great Expectations Data Docs that stay readable without internet access.

GX's Data Docs take their styles, icons and scripts from public CDNs (Bootstrap, Font Awesome,
jQuery, bootstrap-table). Many public-health networks reach no CDN, and there the pages lose:

* the list of validation runs on the index page: bootstrap-table draws it from data in a script,
  so the page shows an empty table;
* every status icon (Font Awesome glyphs drawn by CSS): which expectation failed is not shown;
* all layout.

:func:`make_offline` runs after each Data Docs build and adds, to every page, biolake's own small
stylesheet (``static/styles/biolake-offline.css``) and one line of script. The page starts marked
``biolake-offline`` (a class on ``<html>``). The line of script, at the end of the body, removes the
mark when jQuery from the CDN did load: online, the pages look exactly as GX made them. Offline, or
with scripts disabled, the stylesheet draws the status icons as text marks (✔ met, ✘ failed,
! error) and lays out the tables, and the index shows static lists of the validation runs and of
the expectation suites, made here from the GX project, in place of its empty table. In that list a
validation whose failed expectations are all warnings reads "warnings only", and one with a failed
critical expectation "failed (blocks publication)": GX itself calls both unsuccessful (QA: the
operator could not tell from the Data Docs what blocked the gate).

The additions are marked, so running it again on pages it already changed does nothing; GX
rewrites the index on every build, and this adds its list back each time.
"""

from __future__ import annotations

import html
import json
import os
import re
from datetime import datetime
from pathlib import Path

STYLESHEET = Path("static") / "styles" / "biolake-offline.css"
VALIDATIONS = Path("uncommitted") / "validations"  # in the GX project
MARK = "<!-- biolake:offline -->"
OFFLINE_CLASS = "biolake-offline"

# biolake's own rules; every one applies only while the page is marked offline
CSS = """/* biolake: Data Docs without CDN (quality/data_docs_offline.py) */
html.biolake-offline body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
  max-width: 75rem; margin: 0 auto; padding: 1rem; line-height: 1.4; }
html.biolake-offline a { color: #0b57d0; }
html.biolake-offline table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
html.biolake-offline th, html.biolake-offline td { border: 1px solid #d0d7de; padding: 0.25rem 0.6rem;
  text-align: left; vertical-align: top; }
html.biolake-offline th { background: #f6f8fa; }
html.biolake-offline i.fas { font-style: normal; font-weight: bold; }
html.biolake-offline i.fa-check-circle::before { content: "\\2714"; color: #1a7f37; }
html.biolake-offline i.fa-times::before { content: "\\2718"; color: #cf222e; }
html.biolake-offline i.fa-exclamation-triangle::before { content: "!"; color: #9a6700; }
html.biolake-offline img { max-height: 2.5rem; }
html.biolake-offline .ge-index-page-validation-results-table,
html.biolake-offline [id$="-body-table-toolbar"] { display: none; }
.biolake-offline-index { display: none; }
html.biolake-offline .biolake-offline-index { display: block; }
.biolake-offline-index .failed td { background: #ffebe9; }
.biolake-offline-index .warning td { background: #fff8c5; }
"""

_HTML_TAG = re.compile(r"<html(\s[^>]*)?>", re.IGNORECASE)
_INDEX_TABLE_END = re.compile(r'ge-index-page-validation-results-table"[^>]*>\s*</table>', re.DOTALL)


def make_offline(docs_dir: Path, gx_dir: Path) -> int:
    """Make every page under ``docs_dir`` readable offline; returns the pages changed.

    ``gx_dir``: the GX project, whose validation results and suites are the source of the index's
    static lists (only those whose page exists are listed)."""
    docs_dir = Path(docs_dir)
    if not docs_dir.is_dir():
        return 0
    css = docs_dir / STYLESHEET
    css.parent.mkdir(parents=True, exist_ok=True)
    if not css.exists() or css.read_text(encoding="utf-8") != CSS:
        css.write_text(CSS, encoding="utf-8")
    changed = 0
    for page in sorted(docs_dir.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        if MARK in text:
            continue
        out = _mark_page(text, os.path.relpath(css, page.parent).replace(os.sep, "/"))
        if out == text:  # not a page GX made as we know them
            continue
        if page == docs_dir / "index.html":
            out = _with_static_index(out, validation_runs(docs_dir, gx_dir), suite_pages(docs_dir, gx_dir))
        page.write_text(out, encoding="utf-8")
        changed += 1
    return changed


def _mark_page(text: str, css_href: str) -> str:
    def add_class(m: re.Match) -> str:
        attrs = m.group(1) or ""
        if re.search(r'\sclass\s*=\s*"', attrs):
            attrs = re.sub(r'(\sclass\s*=\s*")', rf"\1{OFFLINE_CLASS} ", attrs, count=1)
        else:
            attrs = f' class="{OFFLINE_CLASS}"{attrs}'
        return f"<html{attrs}>"

    text, n = _HTML_TAG.subn(add_class, text, count=1)
    if not n:  # not a page GX made as we know them: leave it alone
        return text
    head = f'{MARK}\n<link rel="stylesheet" href="{html.escape(css_href)}"/>\n'
    script = ("<script>/* biolake: the CDN answered, GX's own look applies */"
              f'if (window.jQuery) document.documentElement.classList.remove("{OFFLINE_CLASS}");</script>\n')
    text = _insert_before(text, "</head>", head)
    return _insert_before(text, "</body>", script)


def _insert_before(text: str, tag: str, addition: str) -> str:
    i = text.lower().rfind(tag)
    return text + addition if i < 0 else text[:i] + addition + text[i:]


def validation_runs(docs_dir: Path, gx_dir: Path) -> list[dict]:
    """One dict per validation result kept by GX whose Data Docs page exists, newest run first:
    suite, run_name, run_time (UTC), success, evaluated, failed, failed_critical (the failed
    expectations of severity critical, or that raised: they block the publication), page
    (relative to ``docs_dir``)."""
    runs = []
    store = Path(gx_dir) / VALIDATIONS
    if not store.is_dir():
        return runs
    for path in store.rglob("*.json"):
        rel = path.relative_to(store).with_suffix(".html")
        page = Path(docs_dir) / "validations" / rel
        if not page.exists():
            continue
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        stats = doc.get("statistics") or {}
        run = (doc.get("meta") or {}).get("run_id") or {}
        runs.append({
            "suite": doc.get("suite_name") or rel.parts[0],
            "run_name": run.get("run_name") or (rel.parts[1] if len(rel.parts) > 1 else ""),
            "run_time": _utc(run.get("run_time")),
            "success": bool(doc.get("success")),
            "evaluated": int(stats.get("evaluated_expectations") or 0),
            "failed": int(stats.get("unsuccessful_expectations") or 0),
            "failed_critical": _failed_critical(doc),
            "page": "validations/" + rel.as_posix(),
        })
    # newest run first; within a run, suites in alphabetical order (sorts are stable)
    runs.sort(key=lambda r: r["suite"])
    runs.sort(key=lambda r: r["run_time"], reverse=True)
    return runs


def _failed_critical(doc: dict) -> int:
    """Failed expectations that block the publication: severity critical (GX's default, so a result
    without one counts), or one that raised (flows/quality_gate.py counts it as failed)."""
    n = 0
    for r in doc.get("results") or []:
        exc = r.get("exception_info") or {}
        raised = bool(exc.get("raised_exception")) if isinstance(exc, dict) else False
        if r.get("success") and not raised:
            continue
        severity = str((r.get("expectation_config") or {}).get("severity") or "critical").lower()
        n += severity.endswith("critical") or raised
    return n


def status_of(run: dict) -> tuple[str, str]:
    """(css class, text) of a validation run in the static index."""
    if run["success"] and not run.get("failed_critical"):
        return "met", "&#10004; met"
    if not run.get("failed_critical"):
        return "warning", "! warnings only"
    return "failed", "&#10008; failed (blocks publication)"


def suite_pages(docs_dir: Path, gx_dir: Path) -> list[dict]:
    """One dict per expectation suite whose Data Docs page exists, by name: suite, expectations
    (how many the suite holds), page (relative to ``docs_dir``)."""
    out = []
    for page in sorted((Path(docs_dir) / "expectations").glob("*.html")):
        try:
            doc = json.loads((Path(gx_dir) / "expectations" / f"{page.stem}.json").read_text(encoding="utf-8"))
            n = len(doc.get("expectations") or [])
        except (OSError, ValueError):
            n = None
        out.append({"suite": page.stem, "expectations": n, "page": f"expectations/{page.name}"})
    return out


def _utc(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return value


def _with_static_index(text: str, runs: list[dict], suites: list[dict]) -> str:
    rows = []
    for r in runs:
        css, mark = status_of(r)
        rows.append(
            f'<tr class="{css}"><td>{mark}</td>'
            f'<td>{html.escape(r["run_time"])}</td><td>{html.escape(r["run_name"])}</td>'
            f'<td><a href="{html.escape(r["page"])}">{html.escape(r["suite"])}</a></td>'
            f'<td>{r["evaluated"] - r["failed"]} of {r["evaluated"]}</td></tr>')
    body = "\n".join(rows) or '<tr><td colspan="5">no validation result yet</td></tr>'
    block = (
        '\n<div class="biolake-offline-index">\n<h2>Validation results</h2>\n'
        "<p>This list is shown because the page's scripts and styles, which Great Expectations loads "
        "from public CDNs, could not be loaded (no internet access here). Newest run first. "
        "<em>warnings only</em>: the failed expectations are warnings, the publication goes out; "
        "<em>failed (blocks publication)</em>: a critical expectation failed, the exports are blocked "
        "until it passes.</p>\n"
        "<table>\n<thead><tr><th>status</th><th>run time</th><th>run</th><th>suite</th>"
        "<th>expectations met</th></tr></thead>\n"
        f"<tbody>\n{body}\n</tbody>\n</table>\n"
        "<h2>Expectation suites</h2>\n<ul>\n"
        + "".join(f'<li><a href="{html.escape(s["page"])}">{html.escape(s["suite"])}</a>'
                  + (f' ({s["expectations"]} expectations)' if s["expectations"] is not None else "") + "</li>\n"
                  for s in suites)
        + "</ul>\n</div>\n")
    m = _INDEX_TABLE_END.search(text)
    if m:
        return text[:m.end()] + block + text[m.end():]
    return _insert_before(text, "</body>", block)
