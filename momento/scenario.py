"""The scenario (`data/scenario.toml`) as validated, typed objects.

The service, the simulator and the cockpit all read the business from here: placements,
experiences, experiments and their arms, governance limits, the population and the true
effects the simulator applies. A scenario that contradicts itself (an arm share that does not
add up, a variant with no experience) is refused on load with the path of the bad field.
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PolicyName = Literal["rules", "thompson", "propensity"]
Channel = Literal["web", "app", "email", "push"]


class ScenarioError(ValueError):
    """The scenario file cannot be used; the message names the file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _shares(value: dict[str, float]) -> dict[str, float]:
    total = sum(value.values())
    if not value or total <= 0 or any(v < 0 for v in value.values()):
        raise ValueError("shares must be non-negative and not all zero")
    return {key: share / total for key, share in value.items()}


class Business(_Model):
    name: str
    currency: str = "BRL"
    timezone: str = "America/Sao_Paulo"
    campaign_days: int = Field(ge=1)
    pre_period_days: int = Field(ge=0)


class Population(_Model):
    users: int = Field(gt=0)
    consent_rate: float = Field(ge=0, le=1)
    holdout_share: float = Field(ge=0, lt=1)
    holdout_salt: str
    returning_share: float = Field(ge=0, le=1)
    anonymous_session_share: float = Field(ge=0, le=1)
    login_rate: float = Field(ge=0, le=1)
    devices: dict[str, float]
    regions: dict[str, float]
    price_sensitivity: dict[str, float]
    styles: dict[str, float]

    _normalise = field_validator("devices", "regions", "price_sensitivity", "styles")(_shares)


class Traffic(_Model):
    sessions_per_user_day: float = Field(gt=0)
    campaign_multiplier: float = Field(gt=0)
    peak_multiplier: float = Field(gt=0)
    diurnal: list[float] = Field(min_length=24, max_length=24)

    @field_validator("diurnal")
    @classmethod
    def _normalise(cls, value: list[float]) -> list[float]:
        return list(_shares({str(i): v for i, v in enumerate(value)}).values())


class Behaviour(_Model):
    pages_per_session_mean: float = Field(gt=0)
    click_rate: float = Field(ge=0, le=1)
    add_to_cart_rate: float = Field(ge=0, le=1)
    conversion_rate: float = Field(ge=0, le=1)
    returning_conversion_multiplier: float = Field(gt=0)
    price_sensitivity_conversion: dict[str, float]
    order_value_mean: float = Field(gt=0)
    order_value_sigma: float = Field(ge=0)
    margin_rate: float = Field(ge=0, le=1)
    return_rate: float = Field(ge=0, le=1)
    nps_response_rate: float = Field(ge=0, le=1)
    nps_mean: float = Field(ge=0, le=10)
    email_open_rate: float = Field(ge=0, le=1)
    email_click_rate: float = Field(ge=0, le=1)
    push_open_rate: float = Field(ge=0, le=1)
    opt_out_per_message: float = Field(ge=0, le=1)
    consent_withdrawal_rate: float = Field(ge=0, le=1)
    stockout_rate: float = Field(ge=0, le=1)


class Catalogue(_Model):
    items: int = Field(gt=0)
    categories: dict[str, float]
    price_bands: dict[str, float]

    _normalise = field_validator("categories", "price_bands")(_shares)


class Governance(_Model):
    decision_budget_ms: float = Field(gt=0)
    no_discount_if_bought_today: bool = True
    exclude_out_of_stock: bool = True


class Journey(_Model):
    id: str
    name: str


class Placement(_Model):
    id: str
    journey: str
    channels: list[Channel] = Field(min_length=1)


class Experience(_Model):
    id: str
    name: str
    placement: str
    default_variant: str
    policy: PolicyName
    variants: list[str] = Field(min_length=1)
    discount: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_is_a_variant(self) -> "Experience":
        if self.default_variant not in self.variants:
            raise ValueError(f"default_variant {self.default_variant!r} is not among variants")
        unknown = set(self.discount) - set(self.variants)
        if unknown:
            raise ValueError(f"discount names unknown variants {sorted(unknown)}")
        return self


class Arm(_Model):
    name: str
    share: float = Field(gt=0, le=1)
    variant: str | None = None
    policy: PolicyName | None = None

    @model_validator(mode="after")
    def _variant_or_policy(self) -> "Arm":
        if (self.variant is None) == (self.policy is None):
            raise ValueError("an arm shows either a fixed `variant` or lets a `policy` choose")
        return self


class Guardrail(_Model):
    metric: str
    margin: float = Field(gt=0, lt=1)


class Experiment(_Model):
    id: str
    experience: str
    salt: str
    status: Literal["draft", "running", "paused", "stopped"]
    hypothesis: str
    primary_metric: str
    secondary_metrics: list[str] = Field(default_factory=list)
    guardrails: list[Guardrail] = Field(default_factory=list)
    arms: list[Arm] = Field(min_length=2)

    @model_validator(mode="after")
    def _arms_add_up(self) -> "Experiment":
        total = sum(arm.share for arm in self.arms)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"arm shares add up to {total:.4f}, not 1")
        if self.arms[0].name != "control":
            raise ValueError("the first arm must be named 'control'")
        if len({arm.name for arm in self.arms}) != len(self.arms):
            raise ValueError("arm names must be unique")
        return self

    @property
    def shares(self) -> dict[str, float]:
        return {arm.name: arm.share for arm in self.arms}


class Effect(_Model):
    click: float = Field(default=1.0, gt=0)
    conversion: float = Field(default=1.0, gt=0)
    order_value: float = Field(default=1.0, gt=0)
    by_segment: dict[str, dict[Literal["click", "conversion", "order_value"], float]] = Field(default_factory=dict)


class Incident(_Model):
    name: Literal["latency_spike", "model_outage", "error_burst", "ingestion_stall", "srm_bug"]
    description: str
    at_day: int = Field(ge=0)
    at_hour: int = Field(default=0, ge=0, le=23)
    hours: float = Field(gt=0)
    experiment: str | None = None
    arm: str | None = None
    drop_share: float | None = Field(default=None, gt=0, lt=1)


class Scenario(_Model):
    business: Business
    population: Population
    traffic: Traffic
    behaviour: Behaviour
    catalogue: Catalogue
    caps: dict[Channel, int]
    governance: Governance
    journeys: list[Journey]
    placements: list[Placement]
    experiences: list[Experience]
    experiments: list[Experiment]
    effects: dict[str, Effect] = Field(default_factory=dict)
    incidents: list[Incident] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> "Scenario":
        journeys = {j.id for j in self.journeys}
        placements = {p.id: p for p in self.placements}
        experiences = {e.id: e for e in self.experiences}
        for p in self.placements:
            if p.journey not in journeys:
                raise ValueError(f"placement {p.id!r} names unknown journey {p.journey!r}")
        for e in self.experiences:
            if e.placement not in placements:
                raise ValueError(f"experience {e.id!r} names unknown placement {e.placement!r}")
        for x in self.experiments:
            experience = experiences.get(x.experience)
            if experience is None:
                raise ValueError(f"experiment {x.id!r} names unknown experience {x.experience!r}")
            for arm in x.arms:
                if arm.variant is not None and arm.variant not in experience.variants:
                    raise ValueError(f"experiment {x.id!r} arm {arm.name!r} shows unknown variant {arm.variant!r}")
        variants = {v for e in self.experiences for v in e.variants}
        unknown = set(self.effects) - variants
        if unknown:
            raise ValueError(f"effects name unknown variants {sorted(unknown)}")
        for incident in self.incidents:
            if incident.experiment is not None and incident.experiment not in {x.id for x in self.experiments}:
                raise ValueError(f"incident {incident.name!r} names unknown experiment {incident.experiment!r}")
        return self

    @cached_property
    def placement_by_id(self) -> dict[str, Placement]:
        return {p.id: p for p in self.placements}

    @cached_property
    def experience_by_placement(self) -> dict[str, Experience]:
        return {e.placement: e for e in self.experiences}

    @cached_property
    def experience_by_id(self) -> dict[str, Experience]:
        return {e.id: e for e in self.experiences}

    @cached_property
    def experiment_by_experience(self) -> dict[str, Experiment]:
        return {x.experience: x for x in self.experiments}

    @cached_property
    def experiment_by_id(self) -> dict[str, Experiment]:
        return {x.id: x for x in self.experiments}

    @cached_property
    def journey_by_id(self) -> dict[str, Journey]:
        return {j.id: j for j in self.journeys}

    def effect(self, variant: str) -> Effect:
        """The true effect of `variant` (no effect for a default or unlisted variant)."""
        return self.effects.get(variant, Effect())


def load_scenario(path: Path) -> Scenario:
    """Read and validate the scenario at `path`."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ScenarioError(f"{path}: {where}: {first['msg']}") from None
