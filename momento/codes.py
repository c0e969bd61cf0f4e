"""Every reason, fallback and error code the engine logs, with the sentence people read; and
the other names it logs from a fixed vocabulary: the personalisation policies and the channels.

The service writes the codes into `decisions.reasons`, `fallback_reason` and `error_code`; the
cockpit turns them back into sentences. One enumeration, so a code can never be logged that
the cockpit cannot explain; one spelling of each policy and channel name, which the scenario,
the engine, the simulator, the KPI catalogue and the cockpit all import from here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

PolicyName = Literal["rules", "thompson", "propensity"]
"""The policies that choose a variant per request (an experience's or an arm's `policy`)."""
Channel = Literal["web", "app", "email", "push"]
"""Where a placement is shown."""

POLICY_NAMES: tuple[PolicyName, ...] = get_args(PolicyName)
CHANNELS: tuple[Channel, ...] = get_args(Channel)


class Code(StrEnum):
    # Why a personalised answer was given.
    POLICY_RULES = "policy_rules"
    POLICY_THOMPSON = "policy_thompson"
    POLICY_PROPENSITY = "policy_propensity"
    FIXED_ARM = "fixed_arm"
    # Why the default was given (not a failure: the design says so).
    HOLDOUT = "holdout"
    CONTROL_ARM = "control_arm"
    EXPERIENCE_INACTIVE = "experience_inactive"
    PAUSED_BY_GUARDRAIL = "paused_by_guardrail"
    # Governance fallbacks.
    NO_CONSENT = "no_consent"
    FREQUENCY_CAP = "frequency_cap"
    BOUGHT_TODAY = "bought_today"
    OUT_OF_STOCK = "out_of_stock"
    CHANNEL_NOT_SERVED = "channel_not_served"
    # Engine fallbacks and errors.
    BUDGET_EXCEEDED = "budget_exceeded"
    MODEL_ERROR = "model_error"
    MODEL_UNAVAILABLE = "model_unavailable"
    FEATURE_STORE_ERROR = "feature_store_error"
    INTERNAL_ERROR = "internal_error"


SENTENCES: dict[Code, str] = {
    Code.POLICY_RULES: "Chosen by the experience's business rules.",
    Code.POLICY_THOMPSON: "Chosen by the Thompson-sampling bandit over the variants.",
    Code.POLICY_PROPENSITY: "Chosen by the propensity model's predicted conversion.",
    Code.FIXED_ARM: "The visitor's experiment arm shows this variant.",
    Code.HOLDOUT: "The visitor is in the global holdout: the default experience, by design.",
    Code.CONTROL_ARM: "The visitor is in the experiment's control arm: the default experience.",
    Code.EXPERIENCE_INACTIVE: "The experience is not running today: the default experience.",
    Code.PAUSED_BY_GUARDRAIL: "The visitor's arm is paused (a guardrail or a person): served as the control arm.",
    Code.NO_CONSENT: "No consent to personalise: the default experience.",
    Code.FREQUENCY_CAP: "The visitor reached today's frequency cap for this channel.",
    Code.BOUGHT_TODAY: "No discount for a customer who already bought today.",
    Code.OUT_OF_STOCK: "The item to promote is out of stock.",
    Code.CHANNEL_NOT_SERVED: "The placement is not served on this channel.",
    Code.BUDGET_EXCEEDED: "The decision took longer than its time budget: safe default served.",
    Code.MODEL_ERROR: "The model raised an error: safe default served.",
    Code.MODEL_UNAVAILABLE: "The model is unavailable: safe default served.",
    Code.FEATURE_STORE_ERROR: "Live features could not be read: safe default served.",
    Code.INTERNAL_ERROR: "An unexpected error: safe default served.",
}

POLICY_CODES: dict[PolicyName, Code] = {name: Code(f"policy_{name}") for name in POLICY_NAMES}
"""The reason code a decision carries when policy `name` chose its variant."""

# Codes that mean the engine failed, as opposed to a deliberate default.
FAILURES: frozenset[Code] = frozenset(
    {Code.BUDGET_EXCEEDED, Code.MODEL_ERROR, Code.MODEL_UNAVAILABLE, Code.FEATURE_STORE_ERROR, Code.INTERNAL_ERROR}
)


def sentence(code: str) -> str:
    """The human sentence for `code` (the code itself if it is unknown, e.g. from old data)."""
    try:
        return SENTENCES[Code(code)]
    except ValueError:
        return code
