"""The versioned event contract shared by the producer and the consumer.

One Meta webhook item becomes one event. The producer publishes events as JSON
(`Event` below, discriminated on ``kind``); the consumer accepts exactly this
shape. Input tolerates unknown fields (forward compatibility: a newer producer
may add some); an unknown ``v`` is a permanent failure at the consumer.

Every event keeps ``raw``, the item exactly as Meta sent it, so nothing Meta
sent is lost even when this contract does not model a field yet.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, computed_field

from contracts.dedup import dedup_id

CONTRACT_VERSION = 1

JsonObject = dict[str, Any]


class EventKind(StrEnum):
    MESSAGE = "message"
    EDIT = "message_edit"
    UNSEND = "message_unsend"
    REACTION = "reaction"
    READ = "read"
    POSTBACK = "postback"
    REFERRAL = "referral"
    CHANGE = "change"
    UNSUPPORTED = "unsupported"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class Attachment(_Model):
    """One attachment as Meta describes it; media is referenced, never downloaded."""

    type: str
    url: str | None = None
    payload: JsonObject = Field(default_factory=dict)


class Story(_Model):
    """The story a message replies to (`reply_to.story`) or mentions."""

    id: str | None = None
    url: str | None = None


class _EventBase(_Model):
    v: Literal[1] = 1
    account_id: str = Field(
        description="entry[].id: the Instagram business account the delivery is for"
    )
    sender_id: str | None = None
    recipient_id: str | None = None
    timestamp: int | None = Field(
        default=None, description="milliseconds since the epoch, as Meta sends it"
    )
    source: Literal["messaging", "changes"] = "messaging"
    raw: JsonObject = Field(description="the webhook item exactly as Meta sent it")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dedup_id(self) -> str:
        """Derived, never trusted from input: the one rule lives in `contracts.dedup`."""
        return dedup_id(self)


class MessageEvent(_EventBase):
    """A new message: text, attachments, replies, story replies, echoes, unsupported."""

    kind: Literal[EventKind.MESSAGE] = EventKind.MESSAGE
    mid: str = Field(min_length=1)
    direction: Literal["in", "out"] = Field(
        default="in", description="out for echoes: sent by the business account itself"
    )
    text: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    reply_to_mid: str | None = None
    story: Story | None = None
    quick_reply_payload: str | None = None
    is_unsupported: bool = False


class EditEvent(_EventBase):
    kind: Literal[EventKind.EDIT] = EventKind.EDIT
    mid: str = Field(min_length=1)
    text: str | None = None
    num_edit: int = Field(default=0, ge=0)


class UnsendEvent(_EventBase):
    kind: Literal[EventKind.UNSEND] = EventKind.UNSEND
    mid: str = Field(min_length=1)


class ReactionEvent(_EventBase):
    kind: Literal[EventKind.REACTION] = EventKind.REACTION
    mid: str = Field(min_length=1, description="the reacted message's mid")
    action: Literal["react", "unreact"] = "react"
    reaction: str | None = None
    emoji: str | None = None


class ReadEvent(_EventBase):
    kind: Literal[EventKind.READ] = EventKind.READ
    mid: str | None = None
    watermark: int | None = None


class PostbackEvent(_EventBase):
    kind: Literal[EventKind.POSTBACK] = EventKind.POSTBACK
    mid: str | None = None
    title: str | None = None
    payload: str | None = None


class ReferralEvent(_EventBase):
    kind: Literal[EventKind.REFERRAL] = EventKind.REFERRAL
    ref: str | None = None
    referral_source: str | None = None
    referral_type: str | None = None


class ChangeEvent(_EventBase):
    """A `changes` item that is not a messaging event (comments, mentions, insights)."""

    kind: Literal[EventKind.CHANGE] = EventKind.CHANGE
    source: Literal["messaging", "changes"] = "changes"
    field: str
    object_id: str | None = Field(default=None, description="value.id when Meta gives one")


class UnsupportedEvent(_EventBase):
    """Anything we do not recognise; stored with its raw item so nothing is lost."""

    kind: Literal[EventKind.UNSUPPORTED] = EventKind.UNSUPPORTED
    field: str | None = None


Event = Annotated[
    MessageEvent
    | EditEvent
    | UnsendEvent
    | ReactionEvent
    | ReadEvent
    | PostbackEvent
    | ReferralEvent
    | ChangeEvent
    | UnsupportedEvent,
    Field(discriminator="kind"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_LIST_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


def event_to_json(event: Event) -> bytes:
    """The wire form the producer publishes and the consumer reads."""
    return event.model_dump_json().encode()


def event_from_json(data: bytes | str) -> Event:
    """Raises `pydantic.ValidationError` on anything that is not a v1 event."""
    return EVENT_ADAPTER.validate_json(data)


def describe_error(exc: ValidationError) -> str:
    """Where and what is wrong, never the input itself (it may hold message text)."""
    errors = exc.errors(include_input=False, include_url=False)
    if not errors:
        return "not a v1 contract event"
    where = ".".join(str(part) for part in errors[0]["loc"])
    return f"not a v1 contract event: {where}: {errors[0]['msg']}"[:300]
