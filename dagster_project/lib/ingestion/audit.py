"""The frames Great Expectations validates: typed raw rows and the per-day partition audit."""

from __future__ import annotations

from dagster_project.lib.ingestion.contract import KIND_NO_USER, PARENTS, time_column


def validation_query(table: str, parent_given: bool) -> str:
    """The raw rows of days [$first, $last] plus the per-row columns the suite checks.

    ``_partition_start`` / ``_partition_end`` bound each row by its own day (a multi-day
    window is still checked day by day); ``_parent_known`` is the point-in-time
    referential integrity (true when the parent source is not given).
    """
    key = PARENTS.get(table)
    if key and parent_given:
        parent_known = (
            f"exists (select 1 from raw.{key.parent} as p where p.{key.parent_column} = "
            f"t.{key.column} and p._partition_date <= t._partition_date)"
        )
    else:
        parent_known = "true"
    return (
        "select t.*, cast(t._partition_date as timestamp) as _partition_start, "
        "cast(t._partition_date as timestamp) + interval 1 day as _partition_end, "
        f"{parent_known} as _parent_known "
        f"from raw.{table} as t where t._partition_date between $first and $last"
    )


def partition_audit_query(table: str, guests_are_rejects: bool = False) -> str:
    """One row per day of [$first, $last]: what landed, what was accepted and quarantined
    (as recorded and as actually stored), the reject share (guests apart: ``guest_rows`` and
    ``guest_share``, unless ``guests_are_rejects``: the mapping's guests_count_as_rejects)
    with its lower 95 % bound, and the data's staleness."""
    not_rejects = "0" if guests_are_rejects else "coalesce(quarantine_rows.guests, 0)"
    ts = time_column(table)
    latest = (
        f"""daily_latest as (
            select _partition_date as d, max({ts}) as latest
            from raw.{table} where _partition_date <= $last group by 1
        )"""
        if ts
        else "daily_latest as (select null::date as d, null::timestamp as latest where false)"
    )
    return f"""
    with days as (
        select cast(unnest(generate_series(cast($first as timestamp), cast($last as timestamp),
            interval 1 day)) as date) as partition_date
    ),
    audit as (
        select * from audit.ingested_partitions
        where table_name = '{table}' and partition_date between $first and $last
    ),
    raw_rows as (
        select _partition_date as d, count(*) as n from raw.{table}
        where _partition_date between $first and $last group by 1
    ),
    quarantine_rows as (
        select _partition_date as d, count(*) as n,
            count(*) filter (where _kind = '{KIND_NO_USER}') as guests
        from quarantine.{table}
        where _partition_date between $first and $last group by 1
    ),
    {latest},
    counted as (
        select
            days.partition_date,
            audit.*,
            coalesce(raw_rows.n, 0) as raw_rows,
            coalesce(quarantine_rows.n, 0) as quarantine_rows,
            -- guests (no user id) are real activity, not bad data: outside the reject share
            -- (unless the mapping says they count)
            coalesce(quarantine_rows.guests, 0) as guest_rows,
            case when audit.rows_landed > 0
                then (audit.rows_quarantined - {not_rejects})
                    / audit.rows_landed else 0.0 end as reject_share
        from days
        left join audit on audit.partition_date = days.partition_date
        left join raw_rows on raw_rows.d = days.partition_date
        left join quarantine_rows on quarantine_rows.d = days.partition_date
    )
    select
        partition_date,
        run_id,
        rows_landed,
        rows_accepted,
        rows_quarantined,
        rows_landed - rows_accepted - rows_quarantined as unaccounted_rows,
        raw_rows,
        quarantine_rows,
        guest_rows,
        reject_share,
        {wilson_lower_sql("reject_share", "rows_landed")} as reject_share_lower,
        case when rows_landed > 0 then guest_rows / rows_landed else 0.0 end as guest_share,
        (select max(latest) from daily_latest where daily_latest.d <= counted.partition_date)
            as latest_at,
        date_diff('second',
            (select max(latest) from daily_latest where daily_latest.d <= counted.partition_date),
            cast(counted.partition_date as timestamp) + interval 1 day
        ) / 86400.0 as staleness_days
    from counted
    order by partition_date
    """


# One-sided 95 %: a day fails the reject guard only when its share is above the bound with
# that confidence, so one bad row among 3 does not stop a run and 11 % of 10,000 does.
_Z = 1.6448536269514722


def wilson_lower_sql(share: str, n: str) -> str:
    """The lower Wilson score bound of a binomial share (0 for an empty day)."""
    z2 = _Z * _Z
    return (
        f"case when {n} > 0 then greatest(0.0, ({share} + {z2} / (2 * {n}) - {_Z} * sqrt("
        f"greatest(0.0, {share} * (1 - {share}) / {n} + {z2} / (4 * {n} * {n})))) "
        f"/ (1 + {z2} / {n})) else 0.0 end"
    )
