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

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from dagster_project.lib.sample.archetypes import ORDER_VALUE_SIGMA, SECONDS_PER_DAY, TABLES
from dagster_project.lib.sample.behaviour import (
    Ids,
    Users,
    draw_browse_sessions,
    draw_orders,
    draw_users,
)
from dagster_project.lib.sample.campaigns import (
    CAMPAIGN_TABLE,
    CAMPAIGN_TRUTH_FILE,
    CampaignPlan,
    draw_campaigns,
    exposures_frame,
)
from dagster_project.lib.sample.files import (
    FILE_FORMATS,
    clear_landing,
    id_width,
    write_landing,
)
from dagster_project.lib.sample.frames import (
    day_items,
    day_sessions,
    draw_catalogue,
    events_frame,
    order_items_frame,
    orders_frame,
    time_order_rank,
    truth_frame,
    users_frame,
)
from dagster_project.lib.sample.tastes import draw_tastes, line_categories, taste_rng


@dataclass(frozen=True)
class GenerationSummary:
    """What a `generate_sample` call wrote, for the CLI and asset metadata."""

    start_date: date
    end_date: date
    users: int
    rows: dict[str, int]


def generate_sample(
    home: Path,
    users: int,
    days: int,
    seed: int,
    end_date: date | None = None,
    dirty_rate: float = 0.0,
    file_format: str = "csv",
    dirty_per_kind: bool = False,
    campaigns: bool = False,
) -> GenerationSummary:
    """Write `days` days of landing files (ending at `end_date`, default yesterday UTC) for
    `users` users, plus the archetype ground truth. Reruns with the same arguments are
    byte-identical and replace the generator's partitions in the window. A `dirty_rate`
    makes that share of each table's rows bad, of every kind (``dirty_per_kind``: each kind at
    that rate; see lib/sample/defects.py). ``file_format`` is
    ``csv`` or ``parquet`` (the same text in both). ``campaigns`` adds campaign exposures
    whose treated users buy differently, and their true effects (lib/sample/campaigns.py);
    without it the files are exactly those of a sample without campaigns."""
    if users < 1 or days < 1:
        raise ValueError("users and days must be >= 1")
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file format must be one of {', '.join(FILE_FORMATS)}")
    home = Path(home)
    end = end_date or (datetime.now(UTC).date() - timedelta(days=1))
    start = end - timedelta(days=days - 1)

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_users, rng_orders, rng_sessions, rng_profile, rng_catalogue, rng_daily = streams
    u = draw_users(rng_users, users, days)
    order_user, order_day = draw_orders(rng_orders, u, days)
    plan = _campaign_plan(seed, u, days, order_user, order_day) if campaigns else None
    if plan is not None:
        order_user, order_day = plan.order_user, plan.order_day
    browse_user, browse_day = draw_browse_sessions(rng_sessions, u, days)
    ids = Ids(
        base_epoch=(start - date(1970, 1, 1)).days * SECONDS_PER_DAY,
        user_width=id_width(users, 6),
        order_width=id_width(order_user.size, 8),
    )
    users_df = users_frame(rng_profile, u, ids)
    catalogue = draw_catalogue(rng_catalogue)
    rng_taste = taste_rng(seed)
    tastes = draw_tastes(rng_taste, u.archetype)

    clear_landing(home, start, days)
    _write_campaigns(plan, home, start, ids, file_format)
    rows = dict.fromkeys(TABLES, 0)
    for (day,), part in users_df.partition_by("day", as_dict=True, maintain_order=True).items():
        write_landing(part, home, "users", start + timedelta(days=int(day)), file_format)
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
        s = day_sessions(rng_daily, u, day, session_user, np.arange(session_user.size) < n_orders)
        events = events_frame(s, session_user, day, next_session, next_event, ids)
        write_landing(events, home, "events", day_date, file_format)
        next_session += session_user.size
        next_event += events.height
        rows["events"] += events.height
        if n_orders == 0:
            continue

        if plan is not None:  # campaigns scale the value of their treated users' orders
            d_factor = plan.value_factor[order_bounds[day] : order_bounds[day + 1]]
        else:
            d_factor = 1.0
        target_value = (
            u.mean_order_value[d_order_user]
            * d_factor
            * np.exp(rng_daily.normal(-(ORDER_VALUE_SIGMA**2) / 2, ORDER_VALUE_SIGMA, n_orders))
        )
        items = day_items(
            rng_daily,
            target_value,
            catalogue,
            lambda lines, buyers=d_order_user: line_categories(rng_taste, tastes, buyers[lines]),
        )
        # the order is placed 10 s to 3 min after its session's last event
        order_second = (
            s["end"][:n_orders] + rng_daily.integers(10, 181, n_orders) + day * SECONDS_PER_DAY
        )
        order_idx = time_order_rank(order_second) + next_order
        orders = orders_frame(
            rng_daily, u, d_order_user, order_second, items["amount_cents"], order_idx, ids
        )
        order_items = order_items_frame(items, order_idx, catalogue, ids)
        write_landing(orders, home, "orders", day_date, file_format)
        write_landing(order_items, home, "order_items", day_date, file_format)
        next_order += n_orders
        rows["orders"] += orders.height
        rows["order_items"] += order_items.height

    truth_dir = home / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth_frame(u, ids).write_parquet(truth_dir / "archetypes.parquet")
    (truth_dir / CAMPAIGN_TRUTH_FILE).unlink(missing_ok=True)
    if plan is not None:
        plan.truth.write_parquet(truth_dir / CAMPAIGN_TRUTH_FILE)
        rows[CAMPAIGN_TABLE] = plan.exposures.height
    from dagster_project.lib.sample.defects import DEFECTS_FILE, inject_defects

    (truth_dir / DEFECTS_FILE).unlink(missing_ok=True)  # a clean rerun leaves no stale record
    if dirty_rate:
        inject_defects(home, start, end, dirty_rate, seed, file_format, dirty_per_kind)
    return GenerationSummary(start_date=start, end_date=end, users=users, rows=rows)


def _campaign_plan(
    seed: int, u: Users, days: int, order_user: np.ndarray, order_day: np.ndarray
) -> CampaignPlan:
    """Campaigns draw from their own stream (the seventh child of the seed), so the six
    streams of a sample without campaigns are untouched."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(7)[6])
    return draw_campaigns(rng, u, days, order_user, order_day)


def _write_campaigns(
    plan: CampaignPlan | None, home: Path, start: date, ids: Ids, file_format: str
) -> None:
    """The exposures' landing partitions (none without campaigns: a rerun without them leaves
    no stale exposures in the window, see clear_landing)."""
    if plan is None:
        return
    frame = exposures_frame(plan.exposures, ids)
    for (day,), part in frame.partition_by("day", as_dict=True, maintain_order=True).items():
        write_landing(part, home, CAMPAIGN_TABLE, start + timedelta(days=int(day)), file_format)
