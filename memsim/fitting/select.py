"""Model selection: fit every family that suits the data and rank them by AIC.

AIC = N ln(RSS / N) + 2 k (k free parameters, Gaussian errors); lower is better and a difference above ~10 is
decisive. Each family starts from the first library card of that family, with its default free parameters.
"""
from __future__ import annotations

from ..families import FAMILIES
from ..devices.cards import Card, list_cards, load_card
from .data import Measurement
from .fit import DEFAULT_FREE, FitError, FitResult, fit


def default_card(family: str) -> Card | None:
    """The first library card of ``family`` (sorted by name), or None."""
    for name in sorted(list_cards()):
        card = load_card(name)
        if card.family.name == family:
            return card
    return None


def suitable_families(meas: Measurement) -> list[str]:
    """Families with a library card and default free parameters. Every memsim family is a passive pinched
    memristor, which the data checks already required of an I-V sweep."""
    return [f for f in FAMILIES if f in DEFAULT_FREE and default_card(f) is not None]


def rank(meas: Measurement, families: list[str] | None = None, **fit_options) -> list[tuple[str, FitResult | str]]:
    """(family, result) sorted by AIC; a family whose fit fails is listed last with the reason."""
    ok, failed = [], []
    for f in families or suitable_families(meas):
        try:
            ok.append((f, fit(meas, default_card(f), **fit_options)))
        except FitError as exc:
            failed.append((f, str(exc)))
    ok.sort(key=lambda fr: fr[1].aic)
    return ok + failed


def table(ranked: list[tuple[str, FitResult | str]]) -> str:
    rows = [f"{'rank':>4s}  {'family':26s} {'NRMSE':>8s} {'k':>3s} {'AIC':>12s} {'dAIC':>9s} {'time':>7s}  not identified"]
    best = next((r.aic for _, r in ranked if isinstance(r, FitResult)), 0.0)
    for n, (f, r) in enumerate(ranked, 1):
        if isinstance(r, FitResult):
            rows.append(f"{n:4d}  {f:26s} {r.nrmse:8.3%} {len(r.free):3d} {r.aic:12.1f} {r.aic - best:9.1f} "
                        f"{r.seconds:6.1f}s  {', '.join(r.not_identified) or '-'}")
        else:
            rows.append(f"{n:4d}  {f:26s} failed: {r}")
    return "\n".join(rows)
