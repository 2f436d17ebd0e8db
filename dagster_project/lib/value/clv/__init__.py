"""Probabilistic customer-value models: BG/NBD and Pareto/NBD (purchase count, P(alive)) and
Gamma-Gamma (spend).

Why our own implementation instead of the `lifetimes` package: lifetimes is unmaintained, needs
pandas + autograd at run time, and fits one likelihood term per customer. Here the likelihoods
are written in log space (BG/NBD with analytic gradients) and accept *weights* (counts of
identical (x, t_x, T) triples), so a million customers on daily data fit in O(distinct triples),
typically well under a second for BG/NBD. `lifetimes` stays a dev dependency: tests check these
models against it and against the published CDNOW figures.

Conventions (as in Fader, Hardie & Lee 2005 and lifetimes):
- ``frequency`` x: number of repeat purchases (purchase periods after the first one);
- ``recency`` t_x: time between the first and the last purchase;
- ``T``: time between the first purchase and the end of the observation period;
all in one time unit of the caller's choice (the unit only rescales ``alpha``).

All estimators follow scikit-learn's shape: configuration in ``__init__``, learned state in
attributes ending in ``_``, ``fit`` returns ``self``, predictions are pure functions of the
fitted parameters. Heavy imports (scipy) happen inside functions so that importing this package
from Dagster definitions stays cheap.

Layout: ``fitting`` (shared input checks and optimiser), one module per model (``bgnbd``,
``pareto_nbd``, ``gamma_gamma``) and ``forecast`` (discounted purchases, summaries).
"""

from dagster_project.lib.value.clv.bgnbd import BetaGeoModel
from dagster_project.lib.value.clv.fitting import PurchaseModel
from dagster_project.lib.value.clv.forecast import (
    discounted_expected_purchases,
    fitted_params_summary,
)
from dagster_project.lib.value.clv.gamma_gamma import GammaGammaModel
from dagster_project.lib.value.clv.pareto_nbd import ParetoNBDModel

__all__ = [
    "BetaGeoModel",
    "GammaGammaModel",
    "ParetoNBDModel",
    "PurchaseModel",
    "discounted_expected_purchases",
    "fitted_params_summary",
]
