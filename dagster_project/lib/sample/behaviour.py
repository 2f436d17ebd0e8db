"""Drawing users, their purchases and browse sessions as flat numpy arrays (one pass each)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dagster_project.lib.sample.archetypes import (
    ARCHETYPES,
    ESTABLISHED_GAP_DAYS,
    LAST_SIGNUP_SECOND,
    SECONDS_PER_DAY,
    SESSION_RATE_SHAPE,
    USER_VALUE_SIGMA,
)
from dagster_project.lib.sample.files import archetype_param


@dataclass(frozen=True)
class Users:
    """Per-user arrays (index = user number - 1), shared by all tables."""

    archetype: np.ndarray  # int8 index into ARCHETYPES
    signup_day: np.ndarray  # int64 day offset from the window start
    signup_second: np.ndarray  # int64 second of the signup day
    stop_time: np.ndarray  # float64 day offset when purchases stop (days if never)
    mean_order_value: np.ndarray  # float64 per-user mean order value in USD


@dataclass(frozen=True)
class Ids:
    """Id widths and the epoch of the window start, shared by the per-day table builders.
    Session and event counts are unknown up front, so their widths are fixed (10 and 12
    digits keep ids sortable far beyond any sample size)."""

    base_epoch: int
    user_width: int
    order_width: int
    session_width: int = 10
    event_width: int = 12


def _exact_counts(users: int) -> np.ndarray:
    """Archetype sizes matching the shares exactly (largest remainder), so small runs keep
    every archetype."""
    shares = np.array([a.share for a in ARCHETYPES])
    raw = shares / shares.sum() * users
    counts = np.floor(raw).astype(np.int64)
    remainder = users - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:remainder]] += 1
    return counts


def draw_users(rng: np.random.Generator, users: int, days: int) -> Users:
    """Archetype, signup and purchase-stop time per user."""
    archetype = rng.permutation(np.repeat(np.arange(len(ARCHETYPES)), _exact_counts(users)))
    archetype = archetype.astype(np.int8)
    lo = np.zeros(users)
    hi = np.zeros(users)
    stop = np.full(users, float(days))
    u = rng.random(users)
    for code, a in enumerate(ARCHETYPES):
        mask = archetype == code
        if a.recent_signup_days is not None:
            lo[mask], hi[mask] = max(0.0, days - a.recent_signup_days), days
        else:
            a_lo, a_hi = a.signup_window[0] * days, a.signup_window[1] * days
            if days - ESTABLISHED_GAP_DAYS > a_lo:
                a_hi = min(a_hi, days - ESTABLISHED_GAP_DAYS)
            lo[mask], hi[mask] = a_lo, max(a_hi, a_lo + 1.0)
    signup_day = np.minimum(np.floor(lo + u * (hi - lo)), days - 1).astype(np.int64)
    signup_second = rng.integers(0, LAST_SIGNUP_SECOND, users)
    signup_time = signup_day + signup_second / SECONDS_PER_DAY

    u = rng.random(users)
    for code, a in enumerate(ARCHETYPES):
        mask = archetype == code
        if a.stop_after_signup_days is not None:
            s_lo, s_hi = a.stop_after_signup_days
            stop[mask] = signup_time[mask] + s_lo + u[mask] * (s_hi - s_lo)
        elif a.stop_before_end_days is not None:
            s_lo, s_hi = a.stop_before_end_days
            stop[mask] = days - s_lo - u[mask] * (s_hi - s_lo)
    stop = np.clip(
        stop, np.minimum(signup_time + archetype_param("min_active_days")[archetype], days), days
    )

    # per-user mean order value: lognormal around the archetype mean (mean-preserving)
    mean_value = archetype_param("order_value")[archetype] * np.exp(
        rng.normal(-(USER_VALUE_SIGMA**2) / 2, USER_VALUE_SIGMA, users)
    )
    return Users(archetype, signup_day, signup_second, stop, mean_value)


def draw_orders(rng: np.random.Generator, u: Users, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Buy-till-you-die purchases: (user index, day) per order, sorted by day then user.

    First purchase shortly after signup; repeat purchases Poisson with a Gamma-distributed
    per-user rate until the stop time; after each purchase the user drops out with the
    archetype's probability (the geometric number of repeats it allows).
    """
    n = u.archetype.size
    a = u.archetype
    signup_time = u.signup_day + u.signup_second / SECONDS_PER_DAY
    first = signup_time + rng.exponential(archetype_param("first_order_delay_days")[a])
    buys = (rng.random(n) < archetype_param("buy_prob")[a]) & (first < u.stop_time)
    shape = archetype_param("order_rate_shape")[a]
    rate = rng.gamma(shape, archetype_param("order_rate")[a] / shape)
    dropout = archetype_param("dropout_prob")[a]
    allowed = np.where(dropout > 0, rng.geometric(np.clip(dropout, 1e-9, 1.0)) - 1, n * days)
    span = np.where(buys, u.stop_time - first, 0.0)
    repeats = rng.poisson(rate * span)

    rep_user = np.repeat(np.arange(n), repeats)
    rep_time = first[rep_user] + rng.random(rep_user.size) * span[rep_user]
    by_time = np.lexsort((rep_time, rep_user))
    rep_user, rep_time = rep_user[by_time], rep_time[by_time]
    rank = np.arange(rep_user.size) - (np.cumsum(repeats) - repeats)[rep_user]
    alive = rank < allowed[rep_user]  # the first `allowed` repeats happen, then the user dies
    rep_user, rep_time = rep_user[alive], rep_time[alive]
    first_user = np.flatnonzero(buys)
    order_user = np.concatenate([first_user, rep_user])
    order_day = np.floor(np.concatenate([first[first_user], rep_time])).astype(np.int64)
    order_day = np.minimum(order_day, days - 1)
    order = np.lexsort((order_user, order_day))
    return order_user[order], order_day[order]


def draw_browse_sessions(
    rng: np.random.Generator, u: Users, days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Browse sessions (user index, day): Poisson per user while active, at a reduced rate
    after the purchase stop (at-risk users fade out, dormant users vanish)."""
    a = u.archetype
    signup_time = u.signup_day + u.signup_second / SECONDS_PER_DAY
    rate = rng.gamma(SESSION_RATE_SHAPE, archetype_param("session_rate")[a] / SESSION_RATE_SHAPE)
    segments = (
        (signup_time, u.stop_time, rate),
        (
            u.stop_time,
            np.full(a.size, float(days)),
            rate * archetype_param("sessions_after_stop")[a],
        ),
    )
    users_out, days_out = [], []
    for begin, end, seg_rate in segments:
        span = np.maximum(end - begin, 0.0)
        count = rng.poisson(seg_rate * span)
        user = np.repeat(np.arange(a.size), count)
        time = begin[user] + rng.random(user.size) * span[user]
        users_out.append(user)
        days_out.append(np.minimum(np.floor(time).astype(np.int64), days - 1))
    user = np.concatenate(users_out)
    day = np.concatenate(days_out)
    order = np.lexsort((user, day))
    return user[order], day[order]
