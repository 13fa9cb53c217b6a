"""How the report writes numbers and names in both forms; light (no pandas, no matplotlib) for the folder form."""

from __future__ import annotations

import math

BASELINE_DELEGATE = "cpu"


def device_name(device_id: str, model: str, platform: str) -> str:
    """``model (id)`` (or ``platform (id)``), just the id when nothing else is known."""
    name = model or platform
    return f"{name} ({device_id})" if name and name != device_id else device_id


def esc(text: object) -> str:
    """HTML-escape ``text`` exactly as Jinja2's autoescaping (markupsafe) does, without making a ``Markup``.

    For the folder report's per-case HTML built in Python (:mod:`harness.report.case_html`,
    :func:`harness.report.svgplot.draw`), where a ``Markup`` per value cost more than the page.
    """
    return (str(text).replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;")
            .replace("'", "&#39;").replace('"', "&#34;"))


def is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def fmt_ms(value_us: float | None) -> str:
    """Microseconds shown as milliseconds with 3 significant digits and the unit."""
    # value != value: NaN, as is_nan() says for a float (an int is never NaN); inline, it is called 30 times a case
    return "—" if value_us is None or value_us != value_us else f"{sig(value_us / 1000.0)} ms"


def fmt_mb(value: float | None) -> str:
    return "—" if value is None or is_nan(value) else f"{sig(value)} MB"


def fmt_x(value: float | None) -> str:
    return "—" if value is None or is_nan(value) else f"{value:.2f}×"


def sig(value: float) -> str:
    """About 3 significant digits, thousands separated."""
    mag = abs(value)
    if mag >= 100:
        return f"{value:,.0f}"
    if mag >= 10:
        return f"{value:.1f}"
    if mag >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
