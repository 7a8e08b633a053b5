"""Plots. Every function takes ``ax=None`` and returns the matplotlib Axes.

Matplotlib is imported inside the functions, so importing this module is cheap and
plotting stays optional for headless or command-line use.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .evidence import Z95, Effect
from .priorset import PriorEntry


def forest_plot(effects: Sequence[Effect], prior: PriorEntry, *, labels: Sequence[str] | None = None,
                raw_effects: Sequence[Effect] | None = None, extra_priors: Sequence[tuple[str, PriorEntry]] = (),
                ax=None):
    """Forest plot of one parameter: each study and the prior built from them.

    Each study is drawn with its discounted 95% interval (thick) and, when
    ``raw_effects`` are given, its undiscounted interval (thin, grey). The prior's
    median and central 95% interval are drawn as diamonds below, followed by any
    ``extra_priors`` (e.g. the same prior without discounts or robust component).
    Ratios and probabilities are shown on their natural scale with a log/logit axis.

    Parameters
    ----------
    effects
        Discounted effects (:func:`rechallenge.priors.parameter_effects`).
    prior
        The resulting prior entry.
    labels
        One label per effect (default: row ids).
    raw_effects
        The same rows without discounts.
    extra_priors
        ``(label, entry)`` pairs drawn under the main prior.
    ax
        Matplotlib Axes to draw on (a new figure when ``None``).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.45 * (len(effects) + len(extra_priors) + 3)))
    to_natural = np.exp if prior.transform == "log" else (lambda x: 1 / (1 + np.exp(-np.asarray(x))))
    labels = list(labels) if labels is not None else [e.row_id for e in effects]
    n = len(effects)
    for i, eff in enumerate(effects):
        y = n - i + len(extra_priors) + 1
        if raw_effects is not None:
            raw = raw_effects[i]
            ax.plot(to_natural([raw.mean - Z95 * raw.se, raw.mean + Z95 * raw.se]), [y + 0.15] * 2,
                    color="0.6", lw=1)
        ax.plot(to_natural([eff.mean - Z95 * eff.se, eff.mean + Z95 * eff.se]), [y, y], color="C0", lw=2.5)
        ax.plot(to_natural(eff.mean), y, "s", color="C0", ms=4 + 6 * min(1.0, 0.25 / eff.se))
    rows = [("prior", prior)] + list(extra_priors)
    for j, (label, entry) in enumerate(rows):
        y = len(extra_priors) - j + 0.2
        lo, med, hi = entry.quantiles([0.025, 0.5, 0.975])
        ax.fill([lo, med, hi, med], [y, y + 0.3, y, y - 0.3], color="C3" if j == 0 else "C1", alpha=0.8)
        ax.text(1.01, y, f"{med:.2f} ({lo:.2f}–{hi:.2f})", transform=ax.get_yaxis_transform(),
                va="center", fontsize=8)
    ax.set_yticks([n - i + len(extra_priors) + 1 for i in range(n)] +
                  [len(extra_priors) - j + 0.2 for j in range(len(rows))])
    ax.set_yticklabels(labels + [label for label, _ in rows], fontsize=8)
    if prior.transform == "log":
        ax.set_xscale("log")
        ax.axvline(1.0, color="0.3", lw=0.8, ls="--")
    ax.set_xlabel(f"{prior.measure}: {prior.scale}")
    ax.set_title(f"{prior.outcome}.{prior.parameter}  (n_studies = {prior.n_studies}, "
                 f"ESS = {'-' if prior.ess is None else f'{prior.ess:.0f} ' + (prior.ess_unit or '')})",
                 fontsize=9)
    ax.set_ylim(-0.8, n + len(extra_priors) + 1.8)
    return ax
