-- One row per scheme and segment: what to do with the segment's users (goal, recommended
-- actions, channel, priority 1 = act first), from the committed seed seed_segment_playbook
-- (written from the segmentation literature). Covers every key of the rule schemes; cluster ids
-- are data-dependent and reach the playbook through their users' rule segments. Rebuilt in full
-- with the snapshot models (tag snapshot), which read it.
{{
    config(
        materialized='table',
        tags=['snapshot'],
    )
}}

with

playbook as (
    select * from {{ ref('seed_segment_playbook') }}
),

final as (
    select
        cast(scheme as varchar) as scheme,
        cast(segment as varchar) as segment,
        cast(playbook as varchar) as playbook,
        cast(goal as varchar) as goal,
        cast(recommended_actions as varchar) as recommended_actions,
        cast(channel as varchar) as channel,
        cast(priority as integer) as priority,
        cast(based_on as varchar) as based_on
    from playbook
)

select * from final
