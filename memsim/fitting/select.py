"""Model selection: fit every family that suits the data and rank them by AIC.

AIC = N ln(RSS / N) + 2 k (k fitted values: free parameters, and a behavioural fit's initial conductances; Gaussian
errors); lower is better and a difference above ~10 is decisive. Each device family starts from the first library
card of that family, with its default free parameters; pulse data given by polarity are replayed on that card's
SET/RESET verification pulses (:func:`memsim.fitting.pulses.with_amplitudes`). On pulse data the behavioural
families (:mod:`memsim.pulse.families`) are ranked with them, each fitted from estimates of the curve.
"""
from __future__ import annotations

from ..families import FAMILIES
from ..devices.cards import Card, list_cards, load_card
from ..pulse.families import PULSE_FAMILIES
from .behavioural import fit_pulse_family
from .data import DataError, Measurement
from .fit import DEFAULT_FREE, FitError, FitResult, fit
from .pulses import with_amplitudes


def default_card(family: str) -> Card | None:
    """The first library card of ``family`` (sorted by name), or None."""
    for name in sorted(list_cards()):
        card = load_card(name)
        if card.family.name == family:
            return card
    return None


def suitable_families(meas: Measurement, behavioural: bool = True) -> list[str]:
    """Families with a library card and default free parameters (every memsim family is a passive pinched
    memristor, which the data checks already required of an I-V sweep), and on pulse data the behavioural ones."""
    physical = [f for f in FAMILIES if f in DEFAULT_FREE and default_card(f) is not None]
    return physical + (list(PULSE_FAMILIES) if behavioural and meas.kind != "iv" else [])


def fit_family(meas: Measurement, family: str, *, read_voltage: float = 0.1, **fit_options) -> FitResult:
    """One family fitted as :func:`rank` does: a device family from its first library card, a behavioural one
    from estimates of the curve."""
    if family in PULSE_FAMILIES:
        return fit_pulse_family(meas, PULSE_FAMILIES[family], read_voltage=read_voltage, **fit_options)
    card = default_card(family)
    return fit(with_amplitudes(meas, card), card, **fit_options)


def rank(meas: Measurement, families: list[str] | None = None, *, read_voltage: float = 0.1,
         **fit_options) -> list[tuple[str, FitResult | str]]:
    """(family, result) sorted by AIC; a family whose fit fails (or that cannot describe the data, e.g. a
    behavioural family on pulses of several amplitudes) is listed last with the reason."""
    ok, failed = [], []
    for f in families or suitable_families(meas):
        try:
            ok.append((f, fit_family(meas, f, read_voltage=read_voltage, **fit_options)))
        except (FitError, DataError) as exc:
            failed.append((f, str(exc)))
    ok.sort(key=lambda fr: fr[1].aic)
    return ok + failed


def table(ranked: list[tuple[str, FitResult | str]]) -> str:
    rows = [f"{'rank':>4s}  {'family':26s} {'NRMSE':>8s} {'k':>3s} {'AIC':>12s} {'dAIC':>9s} {'time':>7s}  not identified"]
    best = next((r.aic for _, r in ranked if isinstance(r, FitResult)), 0.0)
    for n, (f, r) in enumerate(ranked, 1):
        if isinstance(r, FitResult):
            rows.append(f"{n:4d}  {f:26s} {r.nrmse:8.3%} {len(r.free) + r.extra_dof:3d} {r.aic:12.1f} "
                        f"{r.aic - best:9.1f} {r.seconds:6.1f}s  {', '.join(r.not_identified) or '-'}")
        else:
            rows.append(f"{n:4d}  {f:26s} failed: {r}")
    return "\n".join(rows)
