"""The HTTP API's request and response bodies (pydantic), field names as in the data model.

Ids arrive raw (`user_id`, `anonymous_id`); the service stores only their pseudonymised form.
Unknown fields are refused (a typo must not silently drop data), and every request that
names a visitor needs a `user_id` or an `anonymous_id`. Cross-field checks start their message
with the field they are about ("user_id: ..."), so an error can name it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from momento.codes import Channel

EventType = Literal[
    "page_view",
    "click",
    "add_to_cart",
    "purchase",
    "return",
    "email_open",
    "email_click",
    "push_open",
    "nps_response",
    "consent_change",
    "opt_out",
]
Incident = Literal["latency_spike", "model_outage", "error_burst"]
Id = Annotated[str, Field(min_length=1, max_length=128)]
Label = Annotated[str, Field(min_length=1, max_length=64)]
Money = Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Visitor(_Request):
    user_id: Id | None = Field(default=None, description="the customer's id (raw; stored pseudonymised)")
    anonymous_id: Id | None = Field(default=None, description="a device/cookie id before login (raw)")

    @model_validator(mode="after")
    def _someone(self) -> _Visitor:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("user_id: user_id or anonymous_id is required")
        return self


class _Timed(_Request):
    ts: datetime | None = Field(default=None, description="when it happened (UTC if no offset; default: received)")

    @field_validator("ts")
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if not 2000 <= value.year <= 2100:
            raise ValueError("a timestamp between the years 2000 and 2100 is expected")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecideRequest(_Visitor):
    """A visitor's context: which placement(s) to decide for, and what is known right now."""

    placement: Label | None = Field(default=None, description="one placement (or use `placements`)")
    placements: list[Label] | None = Field(default=None, min_length=1, max_length=8)
    session_id: Id | None = None
    channel: Channel
    device: Label | None = None
    consent: bool = Field(default=False, description="consent to personalise; absent means no")
    page: Annotated[str, Field(max_length=512)] | None = Field(
        default=None, description="informational; no model reads it yet"
    )
    category: Label | None = None
    referrer: Annotated[str, Field(max_length=2048)] | None = None
    cart_value: Annotated[float, Field(ge=0, le=1e7, allow_inf_nan=False)] | None = None
    pages_viewed: Annotated[int, Field(ge=0, le=100_000)] | None = None
    price_sensitivity: Literal["low", "medium", "high"] | None = None
    in_stock: bool | None = Field(
        default=None, description="false: the item this placement would promote is out of stock"
    )
    segment: Literal["new", "returning"] | None = None
    region: Label | None = None
    incidents: list[Incident] = Field(
        default_factory=list, max_length=3, description="fault injection for incident drills (see the service docs)"
    )

    @model_validator(mode="after")
    def _one_way_to_name_placements(self) -> DecideRequest:
        if (self.placement is None) == (self.placements is None):
            raise ValueError("placement: give exactly one of placement or placements")
        return self

    @property
    def placement_list(self) -> list[str]:
        return [self.placement] if self.placement is not None else list(dict.fromkeys(self.placements or []))


class Reason(BaseModel):
    code: str
    sentence: str


class DecisionOut(BaseModel):
    decision_id: str
    placement: str
    journey: str
    experience_id: str
    experiment_id: str | None
    arm: str
    variant: str
    policy: str
    model_version: str | None
    propensity: float
    score: float | None
    reasons: list[Reason]
    fallback: bool
    fallback_reason: str | None
    status: str
    error_code: str | None
    consent: bool
    latency_us: int


class DecideResponse(BaseModel):
    decisions: list[DecisionOut]


class Event(_Visitor, _Timed):
    event_id: Id
    event_type: EventType
    session_id: Id | None = None
    channel: Channel
    placement: Label | None = None
    decision_id: Id | None = None
    experiment_id: Label | None = None
    item_id: Id | None = None
    category: Label | None = None
    quantity: Annotated[int, Field(ge=0, le=100_000)] | None = None
    revenue: Money | None = None
    margin: Money | None = None
    discount_cost: Money | None = None
    nps_score: Annotated[int, Field(ge=0, le=10)] | None = None
    consent: bool | None = None
    device: Label | None = None
    segment: Label | None = None
    region: Label | None = None
    properties: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _type_needs(self) -> Event:
        if self.event_type == "consent_change" and self.consent is None:
            raise ValueError("consent: a consent_change event needs consent (true or false)")
        if self.event_type == "nps_response" and self.nps_score is None:
            raise ValueError("nps_score: an nps_response event needs nps_score (0-10)")
        if self.properties is not None and len(json.dumps(self.properties)) > 4096:
            raise ValueError("properties: must serialise to at most 4096 characters")
        return self


class EventsRequest(_Request):
    events: list[Event] = Field(min_length=1)


class Exposure(_Timed):
    """What the user saw; fields left out are taken from the (recent) decision."""

    decision_id: Id
    exposure_id: Id | None = Field(default=None, description="default: the decision_id (one exposure per decision)")
    user_id: Id | None = None
    anonymous_id: Id | None = None
    session_id: Id | None = None
    placement: Label | None = None
    experiment_id: Label | None = None
    arm: Label | None = None
    variant: Label | None = None
    channel: Channel | None = None


class ExposuresRequest(_Request):
    exposures: list[Exposure] = Field(min_length=1)


class IdentifyRequest(_Timed):
    anonymous_id: Id
    user_id: Id


class Accepted(BaseModel):
    accepted: int
    durable: bool | None = Field(default=None, description="with ?wait=durable: committed to the lake")


class Erased(BaseModel):
    erased: bool
    rows_deleted: dict[str, int]


class ErrorBody(BaseModel):
    error: str
    reason: str
    field: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    uptime_seconds: float
    scenario: str
    writer: dict[str, Any]
