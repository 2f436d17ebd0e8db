from dagster_project.defs.common import covers_every_user_check
from dagster_project.defs.segmentation.assets import USER_SEGMENTS

user_segments_cover_every_user = covers_every_user_check(
    USER_SEGMENTS, "user_segments_cover_every_user"
)
