"""One day's rows per contract table, expanded from the drawn arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from dagster_project.lib.sample.archetypes import (
    ARCHETYPES,
    CATEGORIES,
    CHANNEL_WEIGHTS,
    CHANNELS,
    COUNTRIES,
    COUNTRY_WEIGHTS,
    CURRENCY,
    EVENT_GAP_SECONDS,
    EVENT_TYPES,
    FIRST_NAMES,
    GENDER_WEIGHTS,
    GENDERS,
    LAST_NAMES,
    MAX_SESSION_SECONDS,
    N_PRODUCTS,
    SECONDS_PER_DAY,
    SIGNUP_DAY_OFFSET,
    STATUSES,
)
from dagster_project.lib.sample.behaviour import Ids, Users
from dagster_project.lib.sample.files import archetype_param, id_expr, timestamp_expr
from dagster_project.lib.sample.tastes import nearest_in_category


def draw_catalogue(rng: np.random.Generator) -> pl.DataFrame:
    """Products with a category and a list price (cents, log-uniform $1.99..$1,999.99),
    sorted by price so order items can pick the product nearest a target price."""
    dollars = np.floor(np.exp(rng.uniform(np.log(1.5), np.log(2000.0), N_PRODUCTS)))
    return (
        pl.DataFrame(
            {
                "product_idx": np.arange(1, N_PRODUCTS + 1),
                "category_code": rng.integers(0, len(CATEGORIES), N_PRODUCTS),
                "price_cents": (np.maximum(dollars, 1) * 100 + 99).astype(np.int64),
            }
        )
        .with_columns(
            id_expr("product_idx", "p", 5).alias("product_id"),
            pl.col("category_code")
            .replace_strict(list(range(len(CATEGORIES))), list(CATEGORIES))
            .alias("category"),
        )
        .sort("price_cents", "product_idx")
    )


def users_frame(rng: np.random.Generator, u: Users, ids: Ids) -> pl.DataFrame:
    """The users table (one row per user: every user has a profile) plus a `day` column."""
    n = u.archetype.size

    def pick(values: tuple[str, ...], weights: tuple[float, ...] | None = None) -> np.ndarray:
        p = None if weights is None else np.array(weights) / np.sum(weights)
        return np.array(values)[rng.choice(len(values), n, p=p)]

    first_name, last_name = pick(FIRST_NAMES), pick(LAST_NAMES)
    # unique contact details: a permutation for the e-mail number, and an affine bijection
    # modulo 10^7 (multiplier coprime to 10) for the seven phone digits
    scramble = rng.permutation(n)
    phone = (scramble * 7_919_371 + int(rng.integers(0, 10**7))) % 10**7
    return (
        pl.DataFrame(
            {
                "user_idx": np.arange(1, n + 1),
                "day": u.signup_day,
                "signup_s": u.signup_day * SECONDS_PER_DAY + u.signup_second,
                "country": pick(COUNTRIES, COUNTRY_WEIGHTS),
                "channel": pick(CHANNELS, CHANNEL_WEIGHTS),
                "birth_year": rng.integers(1950, 2008, n),
                "gender": pick(GENDERS, GENDER_WEIGHTS),
                "first_name": first_name,
                "last_name": last_name,
                "email_n": scramble + 1,
                "phone_a": phone // 10_000,
                "phone_b": phone % 10_000,
            }
        )
        .with_columns(
            id_expr("user_idx", "u", ids.user_width).alias("user_id"),
            timestamp_expr("signup_s", ids.base_epoch).alias("signup_at"),
            pl.concat_str(
                "first_name",
                pl.lit("."),
                "last_name",
                pl.col("email_n").cast(pl.String),
                pl.lit("@example.com"),
            ).alias("email"),
            pl.concat_str(
                pl.lit("+1-555-"),
                pl.col("phone_a").cast(pl.String).str.zfill(3),
                pl.lit("-"),
                pl.col("phone_b").cast(pl.String).str.zfill(4),
            ).alias("phone"),
        )
        .sort("signup_s", "user_idx")
    )


def day_sessions(
    rng: np.random.Generator,
    u: Users,
    day: int,
    session_user: np.ndarray,
    is_purchase: np.ndarray,
) -> dict[str, np.ndarray]:
    """Expand one day's sessions into events with in-day timestamps.

    Returns per-session start and end seconds (within the day) and per-event arrays. Purchase
    sessions always hold an add_to_cart; their order is placed just after the session ends.
    """
    n = session_user.size
    a = u.archetype[session_user]
    counts = np.column_stack(
        [
            np.ones(n, dtype=np.int64),
            1 + rng.poisson(archetype_param("page_views")[a]),
            rng.poisson(archetype_param("searches")[a]),
            rng.poisson(archetype_param("add_to_carts")[a]) + is_purchase,
            rng.random(n) < archetype_param("review_prob")[a],
            rng.random(n) < archetype_param("support_prob")[a],
        ]
    ).astype(np.int64)
    per_session = counts.sum(axis=1)
    ev_session = np.repeat(np.arange(n), per_session)
    ev_type = np.repeat(np.tile(np.arange(len(EVENT_TYPES)), n), counts.ravel())
    # shuffle everything but session_start inside each session
    key = np.where(ev_type == 0, -1.0, rng.random(ev_type.size))
    shuffle = np.lexsort((key, ev_session))
    ev_type = ev_type[shuffle]
    gap = np.where(ev_type == 0, 0.0, rng.exponential(EVENT_GAP_SECONDS, ev_type.size))
    cum = np.cumsum(gap)
    session_first = np.concatenate([[0], np.cumsum(per_session)[:-1]])
    offset = cum - (cum[session_first] - gap[session_first])[ev_session]
    duration = offset[session_first + per_session - 1]
    scale = np.minimum(1.0, MAX_SESSION_SECONDS / np.maximum(duration, 1.0))
    offset = np.floor(offset * scale[ev_session]).astype(np.int64)
    duration = np.floor(duration * scale).astype(np.int64)

    lo = np.where(
        u.signup_day[session_user] == day, u.signup_second[session_user] + SIGNUP_DAY_OFFSET, 0
    )
    room = SECONDS_PER_DAY - 240 - duration - lo  # keeps the order (<= 180 s later) in the day
    start = lo + np.floor(rng.random(n) * room).astype(np.int64)
    return {
        "start": start,
        "end": start + duration,
        "ev_session": ev_session,
        "ev_type": ev_type,
        "ev_second": start[ev_session] + offset,
    }


def day_items(
    rng: np.random.Generator,
    order_value: np.ndarray,
    catalogue: pl.DataFrame,
    line_category: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """1-4 items per order: the target value is split over the lines and each line takes the
    catalogue product nearest its target unit price (within the category `line_category` gives
    the line, from the line's order index, when given: see tastes.py); the order amount is the
    sum of the lines (integer cents, so items always add up to the amount exactly)."""
    n = order_value.size
    lines = 1 + rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05])
    item_order = np.repeat(np.arange(n), lines)
    weight = rng.exponential(1.0, item_order.size)
    share = weight / np.bincount(item_order, weights=weight, minlength=n)[item_order]
    quantity = 1 + rng.choice(3, item_order.size, p=[0.8, 0.15, 0.05])
    target_cents = order_value[item_order] * share / quantity * 100
    prices = catalogue["price_cents"].to_numpy()
    jitter = rng.integers(-3, 4, item_order.size)
    if line_category is None:
        pos = np.clip(np.searchsorted(prices, target_cents) + jitter, 0, prices.size - 1)
    else:
        pos = nearest_in_category(catalogue, line_category(item_order), target_cents, jitter)
    unit_cents = prices[pos]
    amount_cents = np.bincount(item_order, weights=unit_cents * quantity, minlength=n)
    return {
        "item_order": item_order,
        "product_pos": pos,
        "quantity": quantity,
        "unit_cents": unit_cents,
        "amount_cents": np.rint(amount_cents).astype(np.int64),
    }


def time_order_rank(values: np.ndarray) -> np.ndarray:
    """0-based rank of each value (ties by position), so ids follow time order."""
    rank = np.empty(values.size, dtype=np.int64)
    rank[np.argsort(values, kind="stable")] = np.arange(values.size)
    return rank


def events_frame(
    s: dict[str, np.ndarray],
    session_user: np.ndarray,
    day: int,
    next_session: int,
    next_event: int,
    ids: Ids,
) -> pl.DataFrame:
    """One day's events table: ids in timestamp order."""
    session_idx = time_order_rank(s["start"]) + next_session
    return (
        pl.DataFrame(
            {
                "user_idx": session_user[s["ev_session"]] + 1,
                "ts": s["ev_second"] + day * SECONDS_PER_DAY,
                "type_code": s["ev_type"],
                "session_idx": session_idx[s["ev_session"]],
            }
        )
        .sort("ts", "session_idx", "type_code", maintain_order=True)
        .with_row_index("event_idx", offset=next_event)
        .with_columns(
            id_expr("event_idx", "e", ids.event_width).alias("event_id"),
            id_expr("user_idx", "u", ids.user_width).alias("user_id"),
            timestamp_expr("ts", ids.base_epoch).alias("event_at"),
            pl.col("type_code")
            .replace_strict(list(range(len(EVENT_TYPES))), list(EVENT_TYPES))
            .alias("event_type"),
            id_expr("session_idx", "s", ids.session_width).alias("session_id"),
        )
    )


def orders_frame(
    rng: np.random.Generator,
    u: Users,
    order_user: np.ndarray,
    order_second: np.ndarray,
    amount_cents: np.ndarray,
    order_idx: np.ndarray,
    ids: Ids,
) -> pl.DataFrame:
    """One day's orders table; the status depends on the buyer's archetype."""
    a = u.archetype[order_user]
    cancel, refund = archetype_param("cancel_prob")[a], archetype_param("refund_prob")[a]
    draw = rng.random(order_user.size)
    status = np.where(draw < cancel, 1, np.where(draw < cancel + refund, 2, 0))
    return (
        pl.DataFrame(
            {
                "order_idx": order_idx,
                "user_idx": order_user + 1,
                "ts": order_second,
                "amount": amount_cents / 100,
                "status_code": status,
            }
        )
        .sort("order_idx")
        .with_columns(
            id_expr("order_idx", "o", ids.order_width).alias("order_id"),
            id_expr("user_idx", "u", ids.user_width).alias("user_id"),
            timestamp_expr("ts", ids.base_epoch).alias("ordered_at"),
            pl.lit(CURRENCY).alias("currency"),
            pl.col("status_code")
            .replace_strict(list(range(len(STATUSES))), list(STATUSES))
            .alias("status"),
        )
    )


def order_items_frame(
    items: dict[str, np.ndarray], order_idx: np.ndarray, catalogue: pl.DataFrame, ids: Ids
) -> pl.DataFrame:
    """One day's order_items table, lines grouped by order."""
    product = catalogue[items["product_pos"]]
    return (
        pl.DataFrame(
            {
                "order_idx": order_idx[items["item_order"]],
                "line": np.arange(items["item_order"].size),
                "product_id": product["product_id"],
                "category": product["category"],
                "quantity": items["quantity"],
                "unit_price": items["unit_cents"] / 100,
            }
        )
        .sort("order_idx", "line")
        .with_columns(id_expr("order_idx", "o", ids.order_width).alias("order_id"))
    )


def truth_frame(u: Users, ids: Ids) -> pl.DataFrame:
    """Ground truth: the hidden archetype of every user (the pipeline never reads it)."""
    return pl.DataFrame(
        {
            "user_idx": np.arange(1, u.archetype.size + 1),
            "archetype": np.array([a.name for a in ARCHETYPES])[u.archetype],
        }
    ).select(id_expr("user_idx", "u", ids.user_width).alias("user_id"), "archetype")
