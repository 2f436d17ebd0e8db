"""Deterministic sample-data generator: daily landing files for the four contract tables.

Why it exists: the pipeline needs realistic, reproducible input at any scale (tests, demos,
benchmarks up to 1M users), and segmentation needs a ground truth to be measured against.
Every user follows a hidden archetype; purchases follow a heterogeneous buy-till-you-die
process (per-user Poisson rate drawn from a per-archetype Gamma, per-purchase dropout, order
values lognormal around a per-user mean); behaviour events come in sessions. The archetype per
user goes to `truth/archetypes.parquet`, which the pipeline never reads.

Everything is vectorised numpy/polars: user-level arrays are drawn once, orders and browse
sessions once as flat arrays, then a loop over days expands that day's sessions into events,
its orders into items, and writes the day's CSV files. Memory stays bounded by one day of
events plus a few numeric arrays per order and session.

Same (users, days, seed, end_date) gives byte-identical files: one `SeedSequence` feeds
independent streams per concern, consumed in a fixed order.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

# --------------------------------------------------------------------------------------------
# Archetype parameters: the one place to tune how users behave.
# Rates are per day, values in USD. Signup windows are fractions of the generated window
# (`recent_signup_days` overrides them for new users). `stop_after_signup_days` and
# `stop_before_end_days` fix when purchases (and, scaled by `sessions_after_stop`, browsing)
# stop; without them users buy until they drop out through `dropout_prob`.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Archetype:
    """Behaviour parameters of one hidden user archetype."""

    name: str
    share: float
    signup_window: tuple[float, float] = (0.0, 0.6)
    recent_signup_days: float | None = None
    buy_prob: float = 1.0  # chance the user ever makes a first purchase
    first_order_delay_days: float = 2.0  # mean delay from signup to the first purchase
    order_rate: float = 0.0  # mean repeat purchases per day (Gamma mean over users)
    order_rate_shape: float = 8.0  # Gamma shape: lower = more heterogeneous users
    dropout_prob: float = 0.0  # BG/NBD-style chance to become inactive after each purchase
    order_value: float = 50.0  # mean order value (lognormal over users and orders)
    cancel_prob: float = 0.04
    refund_prob: float = 0.03
    stop_after_signup_days: tuple[float, float] | None = None
    stop_before_end_days: tuple[float, float] | None = None
    min_active_days: float = 1.0  # purchases run at least this long after signup
    session_rate: float = 0.1  # browse sessions per day while active (Gamma mean)
    sessions_after_stop: float = 1.0  # session-rate multiplier after the purchase stop
    page_views: float = 3.0  # mean extra page views per session (one is always there)
    searches: float = 1.0
    add_to_carts: float = 0.5
    review_prob: float = 0.05
    support_prob: float = 0.03


ARCHETYPES: tuple[Archetype, ...] = (
    Archetype(
        "vip_loyal", share=0.08, signup_window=(0.0, 0.4), first_order_delay_days=0.5,
        order_rate=1 / 4, dropout_prob=0.001, order_value=300.0, cancel_prob=0.01,
        refund_prob=0.01, session_rate=0.3, page_views=3.0, searches=1.0, add_to_carts=1.2,
        review_prob=0.3, support_prob=0.02,
    ),
    Archetype(
        "regular", share=0.22, signup_window=(0.0, 0.4), order_rate=1 / 7,
        order_rate_shape=16.0, dropout_prob=0.001, order_value=60.0, cancel_prob=0.02,
        refund_prob=0.02, session_rate=0.1, page_views=2.0, searches=0.8, add_to_carts=0.5,
        review_prob=0.08,
    ),
    Archetype(
        "bargain_hunter", share=0.14, signup_window=(0.0, 0.4), first_order_delay_days=1.0,
        order_rate=1 / 5, dropout_prob=0.001, order_value=16.0, cancel_prob=0.18,
        refund_prob=0.15, session_rate=0.18, page_views=1.5, searches=3.0, add_to_carts=2.0,
        review_prob=0.04, support_prob=0.06,
    ),
    Archetype(
        "new", share=0.10, recent_signup_days=14.0, buy_prob=0.85, first_order_delay_days=0.5,
        order_rate=1 / 15, dropout_prob=0.01, order_value=50.0, cancel_prob=0.02,
        refund_prob=0.01, session_rate=0.4, page_views=3.0, searches=1.5, add_to_carts=0.8,
        review_prob=0.0, support_prob=0.08,
    ),
    Archetype(
        "at_risk", share=0.12, signup_window=(0.0, 0.2), order_rate=1 / 7,
        order_rate_shape=16.0, dropout_prob=0.001, order_value=55.0, cancel_prob=0.03,
        refund_prob=0.03, stop_before_end_days=(45.0, 90.0), min_active_days=30.0,
        session_rate=0.1, sessions_after_stop=0.4, page_views=2.0, searches=0.8,
        add_to_carts=0.5, review_prob=0.04, support_prob=0.15,
    ),
    Archetype(
        "dormant", share=0.14, signup_window=(0.0, 0.1), first_order_delay_days=1.0,
        order_rate=0.15, dropout_prob=0.02, order_value=45.0, cancel_prob=0.02,
        refund_prob=0.02, stop_after_signup_days=(3.0, 15.0), session_rate=0.1,
        sessions_after_stop=0.0, page_views=2.0, searches=0.8, add_to_carts=0.5,
        review_prob=0.03, support_prob=0.05,
    ),
    Archetype(
        "browse_only", share=0.20, signup_window=(0.0, 0.6), buy_prob=0.0,
        session_rate=0.1, page_views=2.0, searches=1.2, add_to_carts=0.15, review_prob=0.0,
        support_prob=0.02,
    ),
)  # fmt: skip

TABLES = ("orders", "order_items", "users", "events")
COLUMNS: dict[str, list[str]] = {
    "orders": ["order_id", "user_id", "ordered_at", "amount", "currency", "status"],
    "order_items": ["order_id", "product_id", "category", "quantity", "unit_price"],
    "users": [
        "user_id", "signup_at", "country", "channel", "birth_year", "gender", "email", "phone",
    ],
    "events": ["event_id", "user_id", "event_at", "event_type", "session_id"],
}  # fmt: skip
EVENT_TYPES = ("session_start", "page_view", "search", "add_to_cart", "review", "support_contact")
STATUSES = ("completed", "cancelled", "refunded")
CATEGORIES = ("electronics", "home", "fashion", "beauty", "sports", "books", "toys", "grocery")
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "AU", "NL", "ES", "IT", "JP")
COUNTRY_WEIGHTS = (0.40, 0.12, 0.10, 0.08, 0.08, 0.06, 0.05, 0.04, 0.04, 0.03)
CHANNELS = ("organic", "paid_search", "social", "email", "referral", "affiliate")
CHANNEL_WEIGHTS = (0.35, 0.25, 0.15, 0.10, 0.10, 0.05)
GENDERS = ("female", "male", "other", "unknown")
GENDER_WEIGHTS = (0.48, 0.46, 0.02, 0.04)
FIRST_NAMES = (
    "anna", "ben", "carla", "david", "emma", "felix", "grace", "hugo", "ivy", "jack", "kira",
    "liam", "maya", "noah", "olivia", "paul", "quinn", "rosa", "sam", "tara", "umar", "vera",
    "will", "xena", "yuki", "zoe", "li", "wei", "mei", "jun",
)  # fmt: skip
LAST_NAMES = (
    "smith", "jones", "garcia", "miller", "brown", "davis", "wilson", "moore", "taylor",
    "thomas", "martin", "lee", "walker", "hall", "young", "king", "wright", "lopez", "hill",
    "green", "adams", "baker", "nelson", "carter", "wang", "zhang", "chen", "liu", "kim", "park",
)  # fmt: skip

SECONDS_PER_DAY = 86_400
CURRENCY = "USD"
N_PRODUCTS = 2_000
LAST_SIGNUP_SECOND = 22 * 3600  # signups end at 22:00 so same-day sessions always fit
MAX_SESSION_SECONDS = 3_000  # sessions never cross midnight: every row lands in its own day
EVENT_GAP_SECONDS = 40.0  # mean time between events inside a session
ESTABLISHED_GAP_DAYS = 21.0  # non-new users sign up at least this long before end_date
SIGNUP_DAY_OFFSET = 60  # first activity comes at least a minute after the signup
SESSION_RATE_SHAPE = 6.0  # Gamma shape of per-user session rates
USER_VALUE_SIGMA = 0.35  # lognormal spread of users' mean order values around the archetype's
ORDER_VALUE_SIGMA = 0.45  # lognormal spread of a user's orders around the user's mean


@dataclass(frozen=True)
class GenerationSummary:
    """What a `generate_sample` call wrote, for the CLI and asset metadata."""

    start_date: date
    end_date: date
    users: int
    rows: dict[str, int]


@dataclass(frozen=True)
class _Users:
    """Per-user arrays (index = user number - 1), shared by all tables."""

    archetype: np.ndarray  # int8 index into ARCHETYPES
    signup_day: np.ndarray  # int64 day offset from the window start
    signup_second: np.ndarray  # int64 second of the signup day
    stop_time: np.ndarray  # float64 day offset when purchases stop (days if never)
    mean_order_value: np.ndarray  # float64 per-user mean order value in USD


@dataclass(frozen=True)
class _Ids:
    """Id widths and the epoch of the window start, shared by the per-day table builders.
    Session and event counts are unknown up front, so their widths are fixed (10 and 12
    digits keep ids sortable far beyond any sample size)."""

    base_epoch: int
    user_width: int
    order_width: int
    session_width: int = 10
    event_width: int = 12


def _param(name: str) -> np.ndarray:
    """One archetype parameter as an array indexable by archetype code."""
    return np.array([getattr(a, name) for a in ARCHETYPES], dtype=np.float64)


def _id_expr(column: str, prefix: str, width: int) -> pl.Expr:
    """Zero-padded string id (u000123) from a 1-based integer column."""
    return pl.lit(prefix) + pl.col(column).cast(pl.String).str.zfill(width)


def _width(count: int, minimum: int) -> int:
    """Id digits: at least `minimum`, more only when the count needs them."""
    return max(minimum, len(str(max(count, 1))))


def _timestamp_expr(column: str, base_epoch: int) -> pl.Expr:
    """Second offset from the window start to a naive UTC datetime (seconds precision)."""
    return pl.from_epoch(pl.col(column) + base_epoch, time_unit="s")


def _write_csv(df: pl.DataFrame, home: Path, table: str, day: date) -> None:
    """One day's partition of one table, exactly in contract column order and formats."""
    out = home / "landing" / table / f"date={day.isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    df.select(COLUMNS[table]).write_csv(
        out / "part-00000.csv",
        datetime_format="%Y-%m-%d %H:%M:%S",
        float_precision=2,
        float_scientific=False,
    )


def _clear_landing(home: Path, start: date, days: int) -> None:
    """Remove the generator's own day partitions in the window so a rerun overwrites them."""
    for table in TABLES:
        for offset in range(days):
            part = home / "landing" / table / f"date={(start + timedelta(offset)).isoformat()}"
            if part.exists():
                shutil.rmtree(part)


def _exact_counts(users: int) -> np.ndarray:
    """Archetype sizes matching the shares exactly (largest remainder), so small runs keep
    every archetype."""
    shares = np.array([a.share for a in ARCHETYPES])
    raw = shares / shares.sum() * users
    counts = np.floor(raw).astype(np.int64)
    remainder = users - counts.sum()
    counts[np.argsort(-(raw - counts), kind="stable")[:remainder]] += 1
    return counts


def _draw_users(rng: np.random.Generator, users: int, days: int) -> _Users:
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
    stop = np.clip(stop, np.minimum(signup_time + _param("min_active_days")[archetype], days), days)

    # per-user mean order value: lognormal around the archetype mean (mean-preserving)
    mean_value = _param("order_value")[archetype] * np.exp(
        rng.normal(-(USER_VALUE_SIGMA**2) / 2, USER_VALUE_SIGMA, users)
    )
    return _Users(archetype, signup_day, signup_second, stop, mean_value)


def _draw_orders(rng: np.random.Generator, u: _Users, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Buy-till-you-die purchases: (user index, day) per order, sorted by day then user.

    First purchase shortly after signup; repeat purchases Poisson with a Gamma-distributed
    per-user rate until the stop time; after each purchase the user drops out with the
    archetype's probability (the geometric number of repeats it allows).
    """
    n = u.archetype.size
    a = u.archetype
    signup_time = u.signup_day + u.signup_second / SECONDS_PER_DAY
    first = signup_time + rng.exponential(_param("first_order_delay_days")[a])
    buys = (rng.random(n) < _param("buy_prob")[a]) & (first < u.stop_time)
    shape = _param("order_rate_shape")[a]
    rate = rng.gamma(shape, _param("order_rate")[a] / shape)
    dropout = _param("dropout_prob")[a]
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


def _draw_browse_sessions(
    rng: np.random.Generator, u: _Users, days: int
) -> tuple[np.ndarray, np.ndarray]:
    """Browse sessions (user index, day): Poisson per user while active, at a reduced rate
    after the purchase stop (at-risk users fade out, dormant users vanish)."""
    a = u.archetype
    signup_time = u.signup_day + u.signup_second / SECONDS_PER_DAY
    rate = rng.gamma(SESSION_RATE_SHAPE, _param("session_rate")[a] / SESSION_RATE_SHAPE)
    segments = (
        (signup_time, u.stop_time, rate),
        (u.stop_time, np.full(a.size, float(days)), rate * _param("sessions_after_stop")[a]),
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


def _catalogue(rng: np.random.Generator) -> pl.DataFrame:
    """Products with a category and a list price (cents, log-uniform $1.99..$1,999.99),
    sorted by price so order items can pick the product nearest a target price."""
    dollars = np.floor(np.exp(rng.uniform(np.log(1.5), np.log(2000.0), N_PRODUCTS)))
    return (
        pl.DataFrame(
            {
                "product_idx": np.arange(1, N_PRODUCTS + 1),
                "category": np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), N_PRODUCTS)],
                "price_cents": (np.maximum(dollars, 1) * 100 + 99).astype(np.int64),
            }
        )
        .with_columns(_id_expr("product_idx", "p", 5).alias("product_id"))
        .sort("price_cents", "product_idx")
    )


def _users_frame(rng: np.random.Generator, u: _Users, ids: _Ids) -> pl.DataFrame:
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
            _id_expr("user_idx", "u", ids.user_width).alias("user_id"),
            _timestamp_expr("signup_s", ids.base_epoch).alias("signup_at"),
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


def _day_sessions(
    rng: np.random.Generator,
    u: _Users,
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
            1 + rng.poisson(_param("page_views")[a]),
            rng.poisson(_param("searches")[a]),
            rng.poisson(_param("add_to_carts")[a]) + is_purchase,
            rng.random(n) < _param("review_prob")[a],
            rng.random(n) < _param("support_prob")[a],
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


def _day_items(
    rng: np.random.Generator, order_value: np.ndarray, catalogue: pl.DataFrame
) -> dict[str, np.ndarray]:
    """1-4 items per order: the target value is split over the lines and each line takes the
    catalogue product nearest its target unit price; the order amount is the sum of the lines
    (integer cents, so items always add up to the amount exactly)."""
    n = order_value.size
    lines = 1 + rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05])
    item_order = np.repeat(np.arange(n), lines)
    weight = rng.exponential(1.0, item_order.size)
    share = weight / np.bincount(item_order, weights=weight, minlength=n)[item_order]
    quantity = 1 + rng.choice(3, item_order.size, p=[0.8, 0.15, 0.05])
    target_cents = order_value[item_order] * share / quantity * 100
    prices = catalogue["price_cents"].to_numpy()
    pos = np.searchsorted(prices, target_cents) + rng.integers(-3, 4, item_order.size)
    pos = np.clip(pos, 0, prices.size - 1)
    unit_cents = prices[pos]
    amount_cents = np.bincount(item_order, weights=unit_cents * quantity, minlength=n)
    return {
        "item_order": item_order,
        "product_pos": pos,
        "quantity": quantity,
        "unit_cents": unit_cents,
        "amount_cents": np.rint(amount_cents).astype(np.int64),
    }


def _rank(values: np.ndarray) -> np.ndarray:
    """0-based rank of each value (ties by position), so ids follow time order."""
    rank = np.empty(values.size, dtype=np.int64)
    rank[np.argsort(values, kind="stable")] = np.arange(values.size)
    return rank


def _events_frame(
    s: dict[str, np.ndarray],
    session_user: np.ndarray,
    day: int,
    next_session: int,
    next_event: int,
    ids: _Ids,
) -> pl.DataFrame:
    """One day's events table: ids in timestamp order."""
    session_idx = _rank(s["start"]) + next_session
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
            _id_expr("event_idx", "e", ids.event_width).alias("event_id"),
            _id_expr("user_idx", "u", ids.user_width).alias("user_id"),
            _timestamp_expr("ts", ids.base_epoch).alias("event_at"),
            pl.col("type_code")
            .replace_strict(list(range(len(EVENT_TYPES))), list(EVENT_TYPES))
            .alias("event_type"),
            _id_expr("session_idx", "s", ids.session_width).alias("session_id"),
        )
    )


def _orders_frame(
    rng: np.random.Generator,
    u: _Users,
    order_user: np.ndarray,
    order_second: np.ndarray,
    amount_cents: np.ndarray,
    order_idx: np.ndarray,
    ids: _Ids,
) -> pl.DataFrame:
    """One day's orders table; the status depends on the buyer's archetype."""
    a = u.archetype[order_user]
    cancel, refund = _param("cancel_prob")[a], _param("refund_prob")[a]
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
            _id_expr("order_idx", "o", ids.order_width).alias("order_id"),
            _id_expr("user_idx", "u", ids.user_width).alias("user_id"),
            _timestamp_expr("ts", ids.base_epoch).alias("ordered_at"),
            pl.lit(CURRENCY).alias("currency"),
            pl.col("status_code")
            .replace_strict(list(range(len(STATUSES))), list(STATUSES))
            .alias("status"),
        )
    )


def _order_items_frame(
    items: dict[str, np.ndarray], order_idx: np.ndarray, catalogue: pl.DataFrame, ids: _Ids
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
        .with_columns(_id_expr("order_idx", "o", ids.order_width).alias("order_id"))
    )


def _truth_frame(u: _Users, ids: _Ids) -> pl.DataFrame:
    """Ground truth: the hidden archetype of every user (the pipeline never reads it)."""
    return pl.DataFrame(
        {
            "user_idx": np.arange(1, u.archetype.size + 1),
            "archetype": np.array([a.name for a in ARCHETYPES])[u.archetype],
        }
    ).select(_id_expr("user_idx", "u", ids.user_width).alias("user_id"), "archetype")


def generate_sample(
    home: Path,
    users: int,
    days: int,
    seed: int,
    end_date: date | None = None,
    dirty_rate: float = 0.0,
) -> GenerationSummary:
    """Write `days` days of landing files (ending at `end_date`, default yesterday UTC) for
    `users` users, plus the archetype ground truth. Reruns with the same arguments are
    byte-identical and replace the generator's partitions in the window. A `dirty_rate`
    appends bad rows of every kind at that rate (see lib/sample/defects.py)."""
    if users < 1 or days < 1:
        raise ValueError("users and days must be >= 1")
    home = Path(home)
    end = end_date or (datetime.now(UTC).date() - timedelta(days=1))
    start = end - timedelta(days=days - 1)

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_users, rng_orders, rng_sessions, rng_profile, rng_catalogue, rng_daily = streams
    u = _draw_users(rng_users, users, days)
    order_user, order_day = _draw_orders(rng_orders, u, days)
    browse_user, browse_day = _draw_browse_sessions(rng_sessions, u, days)
    ids = _Ids(
        base_epoch=(start - date(1970, 1, 1)).days * SECONDS_PER_DAY,
        user_width=_width(users, 6),
        order_width=_width(order_user.size, 8),
    )
    users_df = _users_frame(rng_profile, u, ids)
    catalogue = _catalogue(rng_catalogue)

    _clear_landing(home, start, days)
    rows = dict.fromkeys(TABLES, 0)
    for (day,), part in users_df.partition_by("day", as_dict=True, maintain_order=True).items():
        _write_csv(part, home, "users", start + timedelta(days=int(day)))
        rows["users"] += part.height

    order_bounds = np.searchsorted(order_day, np.arange(days + 1))
    browse_bounds = np.searchsorted(browse_day, np.arange(days + 1))
    next_order, next_session, next_event = 1, 1, 1
    for day in range(days):
        day_date = start + timedelta(days=day)
        d_order_user = order_user[order_bounds[day] : order_bounds[day + 1]]
        d_browse_user = browse_user[browse_bounds[day] : browse_bounds[day + 1]]
        # purchase sessions first: session i < n_orders belongs to order i
        session_user = np.concatenate([d_order_user, d_browse_user])
        if session_user.size == 0:
            continue
        n_orders = d_order_user.size
        s = _day_sessions(rng_daily, u, day, session_user, np.arange(session_user.size) < n_orders)
        events = _events_frame(s, session_user, day, next_session, next_event, ids)
        _write_csv(events, home, "events", day_date)
        next_session += session_user.size
        next_event += events.height
        rows["events"] += events.height
        if n_orders == 0:
            continue

        target_value = u.mean_order_value[d_order_user] * np.exp(
            rng_daily.normal(-(ORDER_VALUE_SIGMA**2) / 2, ORDER_VALUE_SIGMA, n_orders)
        )
        items = _day_items(rng_daily, target_value, catalogue)
        # the order is placed 10 s to 3 min after its session's last event
        order_second = (
            s["end"][:n_orders] + rng_daily.integers(10, 181, n_orders) + day * SECONDS_PER_DAY
        )
        order_idx = _rank(order_second) + next_order
        orders = _orders_frame(
            rng_daily, u, d_order_user, order_second, items["amount_cents"], order_idx, ids
        )
        order_items = _order_items_frame(items, order_idx, catalogue, ids)
        _write_csv(orders, home, "orders", day_date)
        _write_csv(order_items, home, "order_items", day_date)
        next_order += n_orders
        rows["orders"] += orders.height
        rows["order_items"] += order_items.height

    truth_dir = home / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    _truth_frame(u, ids).write_parquet(truth_dir / "archetypes.parquet")
    from dagster_project.lib.sample.defects import DEFECTS_FILE, inject_defects

    (truth_dir / DEFECTS_FILE).unlink(missing_ok=True)  # a clean rerun leaves no stale record
    if dirty_rate:
        inject_defects(home, start, end, dirty_rate, seed)
    return GenerationSummary(start_date=start, end_date=end, users=users, rows=rows)
