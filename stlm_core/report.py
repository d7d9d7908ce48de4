"""Small helpers for the book: provenance banners shown on every page with synthetic data or random weights."""

from __future__ import annotations

import html

BANNER_STYLE = (
    "border-left: 6px solid #d9822b; background: #fff4e5; padding: 0.6em 1em; margin: 0.5em 0 1em 0; "
    "font-weight: 600; color: #5c3b00;"
)


def banner_text(dataset: str, weights: str | None = None) -> str | None:
    """The warning to show for this page's data and weights, or None when both are real."""
    reasons = []
    if dataset == "synthetic":
        reasons.append("SYNTHETIC DATA: procedurally generated images, not a real inspection dataset")
    if weights is not None and weights == "random-init":
        reasons.append("RANDOM WEIGHTS: models are randomly initialised, not the official checkpoints")
    if not reasons:
        return None
    return "; ".join(reasons) + ". These numbers show that the pipeline runs; they are not the papers' results."


def banner(dataset: str, weights: str | None = None):
    """An ``IPython.display.HTML`` banner (or a plain note when there is nothing to warn about)."""
    from IPython.display import HTML

    text = banner_text(dataset, weights)
    if text is None:
        return HTML(f"<p>Data: <b>{html.escape(dataset)}</b>; weights: <b>{html.escape(str(weights))}</b>.</p>")
    return HTML(f'<div class="stlm-banner" style="{BANNER_STYLE}">&#9888; {html.escape(text)}</div>')
