"""Campaigns of the sample data (opt-in: ``strata generate --campaigns``): who each campaign
reached or held back, how it changed the treated users' purchases, and the true effects.

Why: effect evaluation (marts.campaign_effects) needs input whose answer is known. A few
campaigns, each aimed at some archetypes on one day of the history, reach a share of the
eligible users (signed up before that day); each reached user is held back as control with the
campaign's control share (an independent coin per user). For treated users only, during the
campaign window (the WINDOW_DAYS days after the exposure day) the campaign

- adds one order with probability ``conversion`` (> 0), or drops each of their window orders
  with probability ``-conversion`` (< 0: the campaign that hurts),
- scales the value of every window order by ``1 + spend``.

Campaign windows do not overlap, and the one campaign whose audience overlaps another's has no
effect, so each campaign's truth is its own effect. The truth (``truth/campaign_effects.parquet``,
never read by the pipeline) is, per campaign x archetype (and ``all``) x metric, the mean over
the exposed users of both arms of E[Y(treated) - Y(control)] given each user's baseline orders
and parameters: the sample average effect that a randomised difference in means estimates.
Metrics as marts.campaign_effects defines them, on completed orders only: ``converted``
(a completed order in the window), ``revenue`` (their amount), ``retained_30d`` / ``_60d`` /
``_90d`` (a completed order in the 30 days ending 30, 60, 90 days after the exposure day).
Effects stay inside the window, so the 60- and 90-day truths are 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from dagster_project.lib.sample.archetypes import ARCHETYPES, SECONDS_PER_DAY
from dagster_project.lib.sample.behaviour import Ids, Users
from dagster_project.lib.sample.files import archetype_param, id_expr, timestamp_expr

CAMPAIGN_TABLE = "campaign_exposures"
CAMPAIGN_TRUTH_FILE = "campaign_effects.parquet"
#: Days after the exposure day that a campaign acts on (and that `conversion` measures).
WINDOW_DAYS = 14
#: Retention is an order in the 30 days ending this many days after the exposure day.
RETENTION_DAYS = (30, 60, 90)
RETENTION_SPAN = 30
METRICS = ("converted", "revenue", *(f"retained_{d}d" for d in RETENTION_DAYS))


@dataclass(frozen=True)
class Effect:
    """A campaign's true effect on one archetype's treated users (see the module doc)."""

    conversion: float = 0.0
    spend: float = 0.0


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    day_share: float  # exposure day as a share of the history
    target: tuple[str, ...]  # archetypes it is aimed at
    reach: float  # share of the eligible target users exposed (either arm)
    control_share: float
    channel: str
    cost: float  # per contact of a treated user; control users cost nothing
    effects: dict[str, Effect] = field(default_factory=dict)  # archetype -> effect
    days_before_end: int | None = None  # instead of day_share: this many days before the last

    def day(self, days: int) -> int:
        """The exposure day (offset from the history's first day)."""
        if self.days_before_end is not None:
            return max(days - 1 - self.days_before_end, 0)
        return int(self.day_share * days)


CAMPAIGNS: tuple[Campaign, ...] = (
    Campaign(
        "c01_vip_care", 0.30, ("vip_loyal", "regular"), 0.9, 0.5, "email", 0.05,
        {"vip_loyal": Effect(0.15, 0.10), "regular": Effect(0.10, 0.05)},
    ),
    Campaign(
        "c02_win_back", 0.45, ("at_risk", "dormant"), 0.9, 0.5, "sms", 0.08,
        {"at_risk": Effect(0.20, 0.0), "dormant": Effect(0.05, 0.0)},
    ),
    # no effect at all: its audience overlaps c01's, whose truth it leaves untouched
    Campaign("c03_newsletter", 0.60, ("regular", "browse_only"), 0.9, 0.5, "push", 0.01, {}),
    # hurts: a blast of discounts that bargain hunters learn to wait for
    Campaign(
        "c04_discount_blast", 0.75, ("bargain_hunter",), 0.9, 0.5, "push", 0.02,
        {"bargain_hunter": Effect(-0.30, -0.10)},
    ),
    # still running at the end of the history (exposed the day before the last): its window is
    # open, so it is measured later; the playbook shows it as a running test
    Campaign(
        "c05_onboarding", 0.0, ("new",), 0.9, 0.5, "email", 0.03,
        {"new": Effect(0.20, 0.0)}, days_before_end=1,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class CampaignPlan:
    """The orders after the campaigns (same layout as draw_orders), a value factor per order,
    the exposures (one row per exposed user and campaign) and the truth."""

    order_user: np.ndarray
    order_day: np.ndarray
    value_factor: np.ndarray
    exposures: pl.DataFrame  # user (index), campaign_id, arm, day, second, channel, cost
    truth: pl.DataFrame


def _exposures(rng: np.random.Generator, u: Users, days: int) -> pl.DataFrame:
    names = [a.name for a in ARCHETYPES]
    frames = []
    for campaign in CAMPAIGNS:
        day = campaign.day(days)
        target = np.isin(u.archetype, [names.index(t) for t in campaign.target])
        eligible = np.flatnonzero(target & (u.signup_day < day))
        reached = eligible[rng.random(eligible.size) < campaign.reach]
        control = rng.random(reached.size) < campaign.control_share
        frames.append(
            pl.DataFrame(
                {
                    "user": reached,
                    "campaign_id": campaign.campaign_id,
                    "arm": np.where(control, "control", "treatment"),
                    "day": np.full(reached.size, day, dtype=np.int64),
                    # contacts go out between 06:00 and 10:00
                    "second": rng.integers(6 * 3600, 10 * 3600, reached.size),
                    "channel": campaign.channel,
                    "cost": np.where(control, 0.0, campaign.cost),
                },
                schema_overrides={"user": pl.Int64},
            )
        )
    return pl.concat(frames, how="vertical")


def _effect_arrays(exposures: pl.DataFrame, u: Users) -> tuple[np.ndarray, np.ndarray]:
    """Per exposure row: the campaign's conversion and spend effect on the user's archetype."""
    names = [a.name for a in ARCHETYPES]
    table = np.zeros((len(CAMPAIGNS), len(names), 2))  # campaign x archetype x (conv, spend)
    for c, campaign in enumerate(CAMPAIGNS):
        for name, effect in campaign.effects.items():
            table[c, names.index(name)] = (effect.conversion, effect.spend)
    ids = [c.campaign_id for c in CAMPAIGNS]
    campaign = exposures["campaign_id"].replace_strict(ids, list(range(len(ids)))).to_numpy()
    effect = table[campaign, u.archetype[exposures["user"].to_numpy()]]
    return effect[:, 0], effect[:, 1]


def _counts_between(
    order_user: np.ndarray, order_day: np.ndarray, user: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Orders of each (user, [lo, hi]) pair (inclusive days), by a sorted (user, day) key."""
    width = int(max(order_day.max(initial=0), hi.max(initial=0))) + 2
    key = np.sort(order_user.astype(np.int64) * width + order_day)
    base = user.astype(np.int64) * width
    return np.searchsorted(key, base + hi, side="right") - np.searchsorted(key, base + lo)


def _window_exposure(
    order_user: np.ndarray,
    order_day: np.ndarray,
    user: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
) -> np.ndarray:
    """Per order: the index of the exposure whose window [first, last] holds it (-1: none).
    Windows of one user never overlap (campaign windows do not), so there is at most one."""
    width = int(max(order_day.max(initial=0), last.max(initial=0))) + 2
    start_key = user.astype(np.int64) * width + first
    by_start = np.argsort(start_key, kind="stable")
    order_key = order_user.astype(np.int64) * width + order_day
    pos = np.searchsorted(start_key[by_start], order_key, side="right") - 1
    candidate = np.where(pos >= 0, by_start[np.maximum(pos, 0)], -1)
    same = (candidate >= 0) & (user[np.maximum(candidate, 0)] == order_user)
    inside = same & (order_day <= last[np.maximum(candidate, 0)])
    return np.where(inside, candidate, -1)


def draw_campaigns(
    rng: np.random.Generator, u: Users, days: int, order_user: np.ndarray, order_day: np.ndarray
) -> CampaignPlan:
    """Expose users, change the treated users' window orders, and compute the truth."""
    exposures = _exposures(rng, u, days)
    conversion, spend = _effect_arrays(exposures, u)
    user = exposures["user"].to_numpy()
    day = exposures["day"].to_numpy()
    treated = (exposures["arm"] == "treatment").to_numpy()
    first, last = day + 1, np.minimum(day + WINDOW_DAYS, days - 1)

    # window orders of treated users: dropped (hurting campaigns) or re-valued
    acting = np.flatnonzero(treated & ((conversion < 0) | (spend != 0)))
    hit = _window_exposure(order_user, order_day, user[acting], first[acting], last[acting])
    matched = hit >= 0
    factor = np.ones(order_user.size)
    factor[matched] = 1.0 + spend[acting][hit[matched]]
    drop_prob = np.zeros(order_user.size)
    drop_prob[matched] = np.maximum(-conversion[acting][hit[matched]], 0.0)
    keep = rng.random(order_user.size) >= drop_prob
    # one extra order for a share of the treated users (helping campaigns)
    extra = treated & (conversion > 0) & (first <= last)
    extra &= rng.random(exposures.height) < np.where(conversion > 0, conversion, 0.0)
    extra_day = first + np.floor(rng.random(exposures.height) * (last - first + 1)).astype(np.int64)
    new_user = np.concatenate([order_user[keep], user[extra]])
    new_day = np.concatenate([order_day[keep], extra_day[extra]])
    new_factor = np.concatenate([factor[keep], 1.0 + spend[extra]])
    order = np.lexsort((new_user, new_day))

    truth = _truth(exposures, u, days, order_user, order_day, conversion, spend)
    return CampaignPlan(new_user[order], new_day[order], new_factor[order], exposures, truth)


def _truth(
    exposures: pl.DataFrame,
    u: Users,
    days: int,
    order_user: np.ndarray,
    order_day: np.ndarray,
    conversion: np.ndarray,
    spend: np.ndarray,
) -> pl.DataFrame:
    """Expected outcomes of every exposed user without and with the campaign (the baseline
    orders are the ones drawn before any campaign acted)."""
    user = exposures["user"].to_numpy()
    day = exposures["day"].to_numpy()
    a = u.archetype[user]
    completed = 1.0 - archetype_param("cancel_prob")[a] - archetype_param("refund_prob")[a]
    p_extra = np.maximum(conversion, 0.0)
    q_drop = np.maximum(-conversion, 0.0)
    n_window = _counts_between(order_user, order_day, user, day + 1, day + WINDOW_DAYS)
    # P(no completed order) of the window's orders, without and with the campaign
    none_0 = (1.0 - completed) ** n_window
    none_1 = (1.0 - completed * (1.0 - q_drop)) ** n_window * (1.0 - p_extra * completed)
    value = u.mean_order_value[user] * completed
    # unobserved while the window or span ends after the history
    window_seen = np.where(day + WINDOW_DAYS <= days - 1, 1.0, np.nan)
    outcomes = {
        "converted": (window_seen * (1.0 - none_0), window_seen * (1.0 - none_1)),
        "revenue": (
            window_seen * n_window * value,
            window_seen * (n_window * (1.0 - q_drop) + p_extra) * (1.0 + spend) * value,
        ),
    }
    for horizon in RETENTION_DAYS:
        lo, hi = day + horizon - RETENTION_SPAN + 1, day + horizon
        n = _counts_between(order_user, order_day, user, lo, hi)
        base = (1.0 - completed) ** n
        # the window lies inside the first span: the campaign acts on it, not on later ones
        treated = base / none_0 * none_1 if horizon - RETENTION_SPAN < 1 else base
        seen = np.where(day + horizon <= days - 1, 1.0, np.nan)
        outcomes[f"retained_{horizon}d"] = (seen * (1.0 - base), seen * (1.0 - treated))

    names = np.array([x.name for x in ARCHETYPES])
    per_user = pl.DataFrame(
        {
            "campaign_id": exposures["campaign_id"],
            "archetype": names[a],
            "conversion_effect": conversion,
            "spend_effect": spend,
            **{f"{m}__0": y0 for m, (y0, _) in outcomes.items()},
            **{f"{m}__1": y1 for m, (_, y1) in outcomes.items()},
        },
        nan_to_null=True,
    )
    frames = []
    for group in ("archetype", None):
        keys = ["campaign_id", "archetype"] if group else ["campaign_id"]
        agg = per_user.group_by(keys).agg(
            pl.len().alias("users"),
            pl.col("conversion_effect").first(),
            pl.col("spend_effect").first(),
            *[pl.col(f"{m}__0").mean().alias(f"{m}__control") for m in METRICS],
            *[(pl.col(f"{m}__1") - pl.col(f"{m}__0")).mean().alias(f"{m}__lift") for m in METRICS],
        )
        if group is None:
            agg = agg.with_columns(
                pl.lit("all").alias("archetype"),
                pl.lit(None, dtype=pl.Float64).alias("conversion_effect"),
                pl.lit(None, dtype=pl.Float64).alias("spend_effect"),
            )
        frames.append(agg)
    wide = pl.concat(frames, how="diagonal")
    return (
        pl.concat(
            [
                wide.select(
                    "campaign_id",
                    "archetype",
                    pl.lit(metric).alias("metric"),
                    pl.col("users").cast(pl.Int64),
                    pl.col(f"{metric}__control").alias("control_value"),
                    pl.col(f"{metric}__lift").alias("true_lift"),
                    "conversion_effect",
                    "spend_effect",
                )
                for metric in METRICS
            ]
        )
        .with_columns(pl.lit(WINDOW_DAYS).alias("window_days"))
        .sort("campaign_id", "archetype", "metric")
    )


def exposures_frame(exposures: pl.DataFrame, ids: Ids) -> pl.DataFrame:
    """The campaign_exposures landing rows, with a `day` column to split them by."""
    return (
        exposures.with_columns(
            (pl.col("user") + 1).alias("user_idx"),
            (pl.col("day") * SECONDS_PER_DAY + pl.col("second")).alias("ts"),
        )
        .with_columns(
            id_expr("user_idx", "u", ids.user_width).alias("user_id"),
            timestamp_expr("ts", ids.base_epoch).alias("exposed_at"),
        )
        .sort("day", "campaign_id", "user_idx")
    )
