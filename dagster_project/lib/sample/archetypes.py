"""Archetype parameters and the sample's fixed vocabularies: the one place to tune how users
behave."""

from __future__ import annotations

from dataclasses import dataclass


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
    # written only with campaigns (lib/sample/campaigns.py)
    "campaign_exposures": ["user_id", "campaign_id", "arm", "exposed_at", "channel", "cost"],
}  # fmt: skip


EVENT_TYPES = ("session_start", "page_view", "search", "add_to_cart", "review", "support_contact")


STATUSES = ("completed", "cancelled", "refunded")


CATEGORIES = (
    "electronics", "home", "fashion", "beauty", "sports", "books", "toys", "grocery", "garden",
    "pets", "health", "jewelry",
)  # fmt: skip


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
