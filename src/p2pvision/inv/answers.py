"""What one labelling answer is, and the checks every answer passes (from the web app or a CSV import). Answers
are what INV's global explanations are built from; the labelling app (:mod:`p2pvision.label`) collects them.

An answer: a client-generated ``answer_id`` (UUID, so that a retried submission is stored once), the labeller's
name, the task (one cluster map), the reveal step the labeller was at, a class guess (one of the task's choices
or "not sure") and 1-5 short free-text features. Text is normalised (Unicode NFKC, whitespace collapsed), limited
in length, and rejected when it holds control characters or starts like a spreadsheet formula; it is stored as
typed and escaped wherever it is shown.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from p2pvision.errors import P2PVisionError

UNSURE = "not sure"
MAX_NAME = 40
MAX_GUESS = 80
MAX_FEATURE = 40
MAX_FEATURES = 5
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FORMULA_START = ("=", "+", "-", "@")


class InvalidAnswer(P2PVisionError, ValueError):
    """An answer that cannot be stored; the message names the field and the rule."""


@dataclass(frozen=True)
class Answer:
    answer_id: str
    labeller: str
    task_id: str
    reveal_step: int
    guess: str
    features: tuple[str, ...]
    created: float = 0.0

    def same_content(self, other: Answer) -> bool:
        """Equal apart from the time it was stored."""
        return (self.answer_id, self.labeller, self.task_id, self.reveal_step, self.guess, self.features) == (
            other.answer_id, other.labeller, other.task_id, other.reveal_step, other.guess, other.features
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer_id": self.answer_id,
            "labeller": self.labeller,
            "task_id": self.task_id,
            "reveal_step": self.reveal_step,
            "guess": self.guess,
            "features": list(self.features),
            "created": self.created,
        }


def clean_text(field: str, value: Any, limit: int) -> str:
    """``value`` as normalised text of 1..limit characters, else an InvalidAnswer naming ``field``."""
    if not isinstance(value, str):
        raise InvalidAnswer(f"{field} must be text, got {type(value).__name__}")
    text = " ".join(unicodedata.normalize("NFKC", value).split())
    if not text:
        raise InvalidAnswer(f"{field} is empty: type a few words")
    if len(text) > limit:
        raise InvalidAnswer(f"{field} is {len(text)} characters long: at most {limit} allowed")
    if any(unicodedata.category(char).startswith("C") for char in text):
        raise InvalidAnswer(f"{field} contains control or invisible characters: type plain text")
    if text.startswith(FORMULA_START):
        raise InvalidAnswer(f"{field} must not start with {' '.join(FORMULA_START)} (spreadsheet formulas)")
    return text


def validate_answer(
    payload: Mapping[str, Any], task: Mapping[str, Any] | None, created: float = 0.0
) -> Answer:
    """Check a submitted answer. ``task`` (its ``choices`` and ``reveal_percents``) is None when the task is not
    known here (a CSV import for another task set): then only the format is checked."""
    if not isinstance(payload, Mapping):
        raise InvalidAnswer("an answer must be a JSON object")
    answer_id = payload.get("answer_id")
    if not isinstance(answer_id, str) or not UUID.match(answer_id):
        raise InvalidAnswer("answer_id must be a lower-case UUID such as 0f8fad5b-d9cb-469f-a165-70867728950e")
    labeller = clean_text("labeller", payload.get("labeller"), MAX_NAME)
    task_id = payload.get("task_id")
    if not isinstance(task_id, str) or not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", task_id):
        raise InvalidAnswer("task_id must be a task identifier (letters, digits, - and _)")
    step = payload.get("reveal_step")
    steps = len(task["reveal_percents"]) if task is not None else 100
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < steps:
        raise InvalidAnswer(f"reveal_step must be a whole number from 0 to {steps - 1}, got {step!r}")
    guess = clean_text("guess", payload.get("guess"), MAX_GUESS)
    if task is not None and guess != UNSURE and guess not in task["choices"]:
        raise InvalidAnswer(f"guess '{guess}' is not one of this task's choices or '{UNSURE}'")
    features = payload.get("features")
    if not isinstance(features, Sequence) or isinstance(features, str) or not features:
        raise InvalidAnswer(f"features must be a list of 1 to {MAX_FEATURES} short texts")
    cleaned: list[str] = []
    for number, feature in enumerate(features, start=1):
        text = clean_text(f"feature {number}", feature, MAX_FEATURE)
        if text.lower() not in (seen.lower() for seen in cleaned):
            cleaned.append(text)
    if len(cleaned) > MAX_FEATURES:
        raise InvalidAnswer(f"{len(cleaned)} features given: at most {MAX_FEATURES} allowed")
    return Answer(answer_id, labeller, task_id, step, guess, tuple(cleaned), created)
