"""The sample every pipeline test shares (see conftest.py's `pipeline_home`)."""

from datetime import date

END = date(2024, 3, 31)
PREVIOUS = date(2024, 3, 30)
USERS, DAYS, SEED = 300, 45, 7
# with campaigns (lib/sample/campaigns.py): exposures for marts.campaign_effects; one campaign
# is exposed on PREVIOUS, so its users have a segment snapshot at exposure and a running test
CAMPAIGNS = True
