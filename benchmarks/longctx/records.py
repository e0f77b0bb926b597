"""OOLONG-synth-style records: one per line, ``user`` / ``date`` / ``text``, label never written.

Each record's text comes from its label's phrase pool, so the label is implied by what the
text is about (a support-ticket topic) and must be inferred, not matched.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

LABELS: tuple[str, ...] = ("billing", "delivery", "technical", "account")

# Each label's message openers: a message starts with one of these (public for tests).
PHRASES: dict[str, tuple[str, ...]] = {
    "billing": (
        "I was charged twice for",
        "the invoice shows the wrong amount for",
        "please refund the payment for",
        "my card was billed early for",
        "the price on my receipt does not match",
        "I want a copy of the bill for",
        "a late fee was added to",
        "the discount was not applied to",
    ),
    "delivery": (
        "the parcel never arrived for",
        "the courier left the box outside for",
        "tracking has not moved for days on",
        "the package came damaged for",
        "shipping is taking far too long for",
        "the wrong address was used for",
        "the box was delivered to a neighbour for",
        "the driver skipped my stop for",
    ),
    "technical": (
        "the app crashes when I open",
        "I get an error screen loading",
        "the page freezes while saving",
        "the update broke the sync of",
        "the screen goes blank after starting",
        "the login button does nothing on",
        "the download stalls halfway through",
        "notifications stopped working for",
    ),
    "account": (
        "I cannot reset the password for",
        "please change the email on",
        "I want to close the profile for",
        "my username was changed without consent on",
        "two-step verification locks me out of",
        "please merge my two profiles for",
        "I need to update my phone number on",
        "someone else signed in to",
    ),
}
_THINGS = (
    "my order",
    "the family plan",
    "the spring bundle",
    "my last purchase",
    "the gift box",
    "the yearly subscription",
    "the starter kit",
    "my workspace",
    "the garden set",
    "the office chair",
    "the travel pack",
    "my new headphones",
)
_ENDINGS = ("", " again", " this week", " since Monday", ", please help", ", thanks")

START_DATE = dt.date(2024, 1, 1)
DAYS = 366


@dataclass(frozen=True)
class Record:
    """One line of the payload and the label its text implies."""

    user: int
    date: dt.date
    label: str
    text: str

    def line(self) -> str:
        """The line as written in the payload (no label)."""
        return f"user: {self.user} || date: {self.date.isoformat()} || text: {self.text}"


def record_text(rng: random.Random, label: str) -> str:
    """A text implying ``label``."""
    return f"{rng.choice(PHRASES[label])} {rng.choice(_THINGS)}{rng.choice(_ENDINGS)}"


def users_for(rng: random.Random, size: int) -> list[int]:
    """Distinct 5-digit user ids, about one per 40 records (at least 6)."""
    n = max(6, size // (80 * 40))
    return rng.sample(range(10_000, 100_000), min(n, 90_000))


def generate(
    rng: random.Random,
    size: int,
    users: list[int],
    weights: dict[str, float],
    user_labels: dict[int, tuple[str, ...]] | None = None,
) -> list[Record]:
    """Records whose lines (joined by newlines) fill at most ``size`` characters.

    ``weights`` gives each label's share; ``user_labels`` optionally restricts users to the
    labels listed for them (labels outside every user's list never occur).
    """
    labels = list(weights)
    cum = [weights[k] for k in labels]
    out: list[Record] = []
    total = 0
    while True:
        user = rng.choice(users)
        allowed = user_labels.get(user) if user_labels else None
        label = rng.choices(labels, cum)[0]
        if allowed is not None and label not in allowed:
            label = rng.choice(allowed)
        date = START_DATE + dt.timedelta(rng.randrange(DAYS))
        rec = Record(user, date, label, record_text(rng, label))
        cost = len(rec.line()) + (1 if out else 0)
        if total + cost > size:
            return out
        out.append(rec)
        total += cost


def payload(records: list[Record]) -> str:
    """The records as the payload text."""
    return "\n".join(r.line() for r in records)
