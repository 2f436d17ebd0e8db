"""Category tastes: which categories a user's order lines come from.

Each archetype favours a few categories (FAVOURITE_CATEGORIES); each user's taste is a
Dirichlet draw around the archetype's, so users of one archetype buy alike without buying the
same, and what a user bought says something about what they will buy next. This is the signal
the category recommendations (marts.user_next_best_categories) are measured on.

The taste draws come from their own random stream (spawned from the seed with TASTE_STREAM),
so users, orders, sessions, events and statuses are the same with or without tastes; only
which product each order line takes (and so its price) follows the taste.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dagster_project.lib.sample.archetypes import ARCHETYPES, CATEGORIES

# Each archetype's categories, most favoured first: the i-th weighs TASTE_WEIGHTS[i] (each
# half the one before), every category not listed OTHER_WEIGHT. A user who has bought an
# archetype's first favourites tends to try its next ones: the signal a recommendation can
# learn from the user's segment and history, and popularity cannot.
FAVOURITE_CATEGORIES: dict[str, tuple[str, ...]] = {
    "vip_loyal": ("electronics", "jewelry", "fashion", "beauty", "home", "sports"),
    "regular": ("grocery", "home", "health", "books", "pets", "garden"),
    "bargain_hunter": ("toys", "pets", "garden", "grocery", "fashion", "health"),
    "new": ("beauty", "fashion", "sports", "health", "electronics", "books"),
    "at_risk": ("sports", "garden", "books", "electronics", "toys", "jewelry"),
    "dormant": ("books", "home", "toys", "pets", "beauty", "grocery"),
    "browse_only": ("electronics", "books", "fashion", "sports", "home", "beauty"),
}

TASTE_WEIGHTS = (8.0, 4.0, 2.0, 1.0, 0.5, 0.25)

OTHER_WEIGHT = 0.05

TASTE_CONCENTRATION = 20.0  # Dirichlet concentration of users around their archetype's taste

TASTE_STREAM = 1_012  # spawn key of the taste stream, apart from the generator's other streams


def taste_rng(seed: int) -> np.random.Generator:
    """The taste stream of a seed, independent of the streams `generate_sample` spawns."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(TASTE_STREAM,)))


def archetype_tastes() -> np.ndarray:
    """Category probabilities per archetype (rows: ARCHETYPES order, columns: CATEGORIES)."""
    weights = np.full((len(ARCHETYPES), len(CATEGORIES)), OTHER_WEIGHT)
    for code, archetype in enumerate(ARCHETYPES):
        favourites = FAVOURITE_CATEGORIES.get(archetype.name, ())
        for category, weight in zip(favourites, TASTE_WEIGHTS, strict=False):
            weights[code, CATEGORIES.index(category)] = weight
    return weights / weights.sum(axis=1, keepdims=True)


def draw_tastes(rng: np.random.Generator, archetype: np.ndarray) -> np.ndarray:
    """Per user, the cumulative category probabilities (float32, last column 1): a Dirichlet
    draw with mean the archetype's taste."""
    alpha = TASTE_CONCENTRATION * archetype_tastes()[archetype]
    draws = rng.gamma(alpha).astype(np.float32)
    cumulative = np.cumsum(draws / draws.sum(axis=1, keepdims=True), axis=1)
    cumulative[:, -1] = 1.0
    return cumulative


def line_categories(
    rng: np.random.Generator, cumulative_tastes: np.ndarray, line_user: np.ndarray
) -> np.ndarray:
    """A category code (index into CATEGORIES) per order line, drawn from its user's taste."""
    draw = rng.random(line_user.size, dtype=np.float32)
    codes = (cumulative_tastes[line_user] <= draw[:, None]).sum(axis=1)
    return np.minimum(codes, len(CATEGORIES) - 1)


def nearest_in_category(
    catalogue: pl.DataFrame, category: np.ndarray, target_cents: np.ndarray, jitter: np.ndarray
) -> np.ndarray:
    """Catalogue position (price order) of the product of each line's category nearest its
    target price, moved by `jitter` places among that category's products."""
    prices = catalogue["price_cents"].to_numpy()
    codes = catalogue["category_code"].to_numpy()
    pos = np.clip(np.searchsorted(prices, target_cents) + jitter, 0, prices.size - 1)
    for code in np.unique(category):
        of_category = np.flatnonzero(codes == code)
        if of_category.size == 0:  # a category without products keeps the overall nearest
            continue
        lines = category == code
        at = np.searchsorted(prices[of_category], target_cents[lines]) + jitter[lines]
        pos[lines] = of_category[np.clip(at, 0, of_category.size - 1)]
    return pos
