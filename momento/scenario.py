"""The scenario (`data/scenario.toml`) as validated, typed objects.

The service, the simulator and the cockpit all read the business from here: placements,
experiences, experiments and their arms, governance limits, the population and the true
effects the simulator applies. A scenario that contradicts itself (an arm share that does not
add up, a variant with no experience, a metric the KPI catalogue does not have, a placement or
experience no one defined) is refused on load with the path of the bad field, e.g.
`experiments.1.guardrails.0.metric: unknown metric 'margin_per_usr' (known: ...)`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Defined with the other logged names in momento.codes; re-exported: the scenario's vocabulary.
from momento.codes import Channel as Channel
from momento.codes import PolicyName as PolicyName
from momento.kpis import METRICS
from momento.policy_maths import CANDIDATE_KINDS, SINGLE_PREFIX

Loc = tuple[str | int, ...]


class ScenarioError(ValueError):
    """The scenario file cannot be used; the message names the file and field."""


class FieldError(ValueError):
    """A contradiction found by a model's validator, with the path of the bad field below that
    model (`load_scenario` puts the model's own path in front)."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(f"{_path(loc)}: {message}")
        self.loc = loc
        self.message = message


def _path(loc: Iterable[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def _known(names: Iterable[str]) -> str:
    return f"(known: {', '.join(names)})"


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
    candidates: list[str] | None = None
    """The Policy lab's candidate policies for this experience (default: all of them)."""

    @model_validator(mode="after")
    def _default_is_a_variant(self) -> Experience:
        if self.default_variant not in self.variants:
            raise FieldError(("default_variant",), f"{self.default_variant!r} is not among variants")
        for name in self.discount:
            if name not in self.variants:
                raise FieldError(("discount", name), f"unknown variant {name!r} {_known(self.variants)}")
        for i, kind in enumerate(self.candidates or ()):
            if kind not in self.candidate_kinds:
                raise FieldError(("candidates", i), f"unknown candidate {kind!r} {_known(self.candidate_kinds)}")
        return self

    @property
    def candidate_kinds(self) -> tuple[str, ...]:
        """Every candidate the Policy lab can build for this experience."""
        return (*CANDIDATE_KINDS, *(f"{SINGLE_PREFIX}{v}" for v in self.variants))

    @property
    def lab_candidates(self) -> tuple[str, ...]:
        """The candidates declared for the Policy lab, or all of them."""
        return tuple(self.candidates) if self.candidates is not None else self.candidate_kinds


class Arm(_Model):
    name: str
    share: float = Field(gt=0, le=1)
    variant: str | None = None
    policy: PolicyName | None = None

    @model_validator(mode="after")
    def _variant_or_policy(self) -> Arm:
        if (self.variant is None) == (self.policy is None):
            raise ValueError("an arm shows either a fixed `variant` or lets a `policy` choose")
        return self


def _experiment_metric(name: str) -> str:
    """`name` if an experiment can use it: in the KPI catalogue (`momento.kpis`) and measured on
    the users exposed to an experiment's element."""
    usable = [n for n, m in METRICS.items() if "exposed" in m.population]
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r} {_known(usable)}")
    if name not in usable:
        raise ValueError(
            f"metric {name!r} is not measured on an experiment's exposed users "
            f"(it is measured on: {', '.join(METRICS[name].population)}); experiments can use "
            f"{', '.join(usable)}"
        )
    return name


ExperimentMetric = Annotated[str, AfterValidator(_experiment_metric)]


class Guardrail(_Model):
    metric: ExperimentMetric
    margin: float = Field(gt=0, lt=1)


class Experiment(_Model):
    id: str
    experience: str
    salt: str
    status: Literal["draft", "running", "paused", "stopped"]
    hypothesis: str
    primary_metric: ExperimentMetric
    secondary_metrics: list[ExperimentMetric] = Field(default_factory=list)
    guardrails: list[Guardrail] = Field(default_factory=list)
    arms: list[Arm] = Field(min_length=2)
    target_effect: float = Field(default=0.05, gt=0, le=10)
    """The relative change of the primary metric worth detecting (a share of |control mean|):
    the power plan says when it would be detected at the experiment's traffic."""

    @model_validator(mode="after")
    def _arms_add_up(self) -> Experiment:
        total = sum(arm.share for arm in self.arms)
        if abs(total - 1.0) > 1e-6:
            raise FieldError(("arms",), f"arm shares add up to {total:.4f}, not 1")
        if self.arms[0].name != "control":
            raise FieldError(("arms", 0, "name"), "the first arm must be named 'control'")
        duplicate = _first_duplicate(arm.name for arm in self.arms)
        if duplicate is not None:
            raise FieldError(("arms", duplicate, "name"), f"arm name {self.arms[duplicate].name!r} is used twice")
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
    def _references_resolve(self) -> Scenario:
        problem = next(self._contradictions(), None)
        if problem is not None:
            raise problem
        return self

    def _contradictions(self) -> Iterator[FieldError]:
        """Every id used twice and every name that does not resolve, in file order."""
        yield from self._ids_used_twice()
        yield from self._placements_and_experiences()
        yield from self._experiments()
        yield from self._effects_and_incidents()

    def _ids_used_twice(self) -> Iterator[FieldError]:
        for field_name, items in (
            ("journeys", self.journeys),
            ("placements", self.placements),
            ("experiences", self.experiences),
            ("experiments", self.experiments),
        ):
            duplicate = _first_duplicate(item.id for item in items)
            if duplicate is not None:
                yield FieldError((field_name, duplicate, "id"), f"id {items[duplicate].id!r} is used twice")

    def _placements_and_experiences(self) -> Iterator[FieldError]:
        """A placement's journey exists; an experience's placement exists and shows only it."""
        journeys = [j.id for j in self.journeys]
        for i, p in enumerate(self.placements):
            if p.journey not in journeys:
                yield FieldError(("placements", i, "journey"), f"unknown journey {p.journey!r} {_known(journeys)}")
        placements = [p.id for p in self.placements]
        shown: dict[str, str] = {}
        for i, e in enumerate(self.experiences):
            if e.placement not in placements:
                yield FieldError(
                    ("experiences", i, "placement"), f"unknown placement {e.placement!r} {_known(placements)}"
                )
            elif e.placement in shown:
                yield FieldError(
                    ("experiences", i, "placement"),
                    f"placement {e.placement!r} already shows experience {shown[e.placement]!r}",
                )
            shown.setdefault(e.placement, e.id)

    def _experiments(self) -> Iterator[FieldError]:
        """An experiment's experience exists and has no other experiment; its arms show its variants."""
        experiences = {e.id: e for e in self.experiences}
        tested: dict[str, str] = {}
        for i, x in enumerate(self.experiments):
            experience = experiences.get(x.experience)
            if experience is None:
                yield FieldError(
                    ("experiments", i, "experience"), f"unknown experience {x.experience!r} {_known(experiences)}"
                )
                continue
            if x.experience in tested:
                yield FieldError(
                    ("experiments", i, "experience"),
                    f"experience {x.experience!r} is already tested by experiment {tested[x.experience]!r}",
                )
            tested.setdefault(x.experience, x.id)
            for a, arm in enumerate(x.arms):
                if arm.variant is not None and arm.variant not in experience.variants:
                    yield FieldError(
                        ("experiments", i, "arms", a, "variant"),
                        f"unknown variant {arm.variant!r} of experience {experience.id!r} "
                        f"{_known(experience.variants)}",
                    )

    def _effects_and_incidents(self) -> Iterator[FieldError]:
        """True effects name variants; an incident names an experiment and one of its arms."""
        variants = [v for e in self.experiences for v in e.variants]
        for name in self.effects:
            if name not in variants:
                yield FieldError(("effects", name), f"unknown variant {name!r} {_known(variants)}")
        experiments = {x.id: x for x in self.experiments}
        for i, incident in enumerate(self.incidents):
            experiment = experiments.get(incident.experiment) if incident.experiment is not None else None
            if incident.experiment is not None and experiment is None:
                yield FieldError(
                    ("incidents", i, "experiment"), f"unknown experiment {incident.experiment!r} {_known(experiments)}"
                )
            elif experiment is not None and incident.arm is not None and incident.arm not in experiment.shares:
                yield FieldError(
                    ("incidents", i, "arm"),
                    f"unknown arm {incident.arm!r} of experiment {experiment.id!r} {_known(experiment.shares)}",
                )

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

    @cached_property
    def offer_variants(self) -> tuple[str, ...]:
        """The variants that show a discount, sorted."""
        return tuple(sorted(v for e in self.experiences for v in e.discount))

    @cached_property
    def offer_placements(self) -> tuple[str, ...]:
        """The placements whose experience can show a discount, sorted."""
        return tuple(sorted(e.placement for e in self.experiences if e.discount))

    def effect(self, variant: str) -> Effect:
        """The true effect of `variant` (no effect for a default or unlisted variant)."""
        return self.effects.get(variant, Effect())


def _first_duplicate(names: Iterable[str]) -> int | None:
    """The position of the first name seen before, or None."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            return i
        seen.add(name)
    return None


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
        raise ScenarioError(f"{path}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    """ "path.of.the.field: what is wrong" for the first error pydantic found."""
    first = exc.errors()[0]
    loc: Loc = tuple(first["loc"])
    message = first["msg"]
    error = first.get("ctx", {}).get("error")
    if isinstance(error, FieldError):
        loc, message = loc + error.loc, error.message
    elif isinstance(error, ValueError):
        message = str(error)  # without pydantic's "Value error, " in front
    return f"{_path(loc) or '(top level)'}: {message}"
