"""The findings block (`analysis.findings.Findings.lines`, the text `study results --study`
prints) as the app and the report show it: the same sentences, the per-strategy tickets as a
list, the caveats apart."""

from __future__ import annotations

import html
import re

from study.analysis.findings import Findings
from study.app.charts import Reference

_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>#+!|$~])")


def _split(findings: Findings) -> tuple[list[str], list[str]]:
    lines = findings.lines()
    if "Caveats:" in lines:
        at = lines.index("Caveats:")
        return lines[:at], [c.removeprefix("- ") for c in lines[at + 1 :]]
    return lines, []


def _md(text: str) -> str:
    return _MARKDOWN.sub(r"\\\1", text)


def findings_markdown(findings: Findings) -> tuple[str, str]:
    """(the statements, the caveats) as Markdown; a ticket line is a list item."""
    head, caveats = _split(findings)
    body = "\n".join(f"- {_md(line.strip())}" if line.startswith("  ") else f"\n{_md(line)}\n" for line in head)
    notes = "\n".join(f"- {_md(c)}" for c in caveats)
    return body, ("**Caveats**\n\n" + notes) if caveats else ""


def findings_html(findings: Findings) -> str:
    """The block as HTML (the report's first section)."""
    head, caveats = _split(findings)
    parts, items = [], []
    for line in head:
        if line.startswith("  "):
            items.append(f"<li>{html.escape(line.strip())}</li>")
            continue
        if items:
            parts.append(f"<ul>{''.join(items)}</ul>")
            items = []
        parts.append(f"<p>{html.escape(line)}</p>")
    if items:
        parts.append(f"<ul>{''.join(items)}</ul>")
    if caveats:
        notes = "".join(f"<li>{html.escape(c)}</li>" for c in caveats)
        parts.append(f"<div class='caveats'><strong>Caveats</strong><ul>{notes}</ul></div>")
    return f"<div class='findings'>{''.join(parts)}</div>"


def ticket_reference(findings: Findings) -> Reference | None:
    """The accuracy chart's reference: the best configuration's dense test accuracy and the
    ticket tolerance below it (None: no best configuration with a ticket)."""
    best = findings.best
    if best is None or best.ticket is None:
        return None
    return Reference(
        best.ticket.dense_test,
        findings.tolerance,
        f"dense test accuracy of {best.label}; shaded: {findings.tolerance * 100:g} point below it",
    )
