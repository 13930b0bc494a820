"""The versioned event contract shared by the producer and the consumer.

One Meta webhook item becomes one event. The producer publishes events as JSON
(`Event` below, discriminated on ``kind``); the consumer accepts exactly this
shape. Input tolerates unknown fields (a newer producer may add some).

Versions: v2 (current) adds optional fields to v1 (platform, test and standby
flags, origin, self-messaging, referrals, typed attachments, `raw_text`) and
derives some dedup IDs differently (reads, postbacks, referrals, changes and
unsupported items include the account). A v1 event, possibly still in QStash, its
DLQ or the ledger, is read into the same models (every new field has a default)
and keeps its v1 dedup ID. Anything else is a permanent failure at the consumer.

Every event keeps ``raw``, the item as Meta sent it (minus the message text, which
travels once, in ``text``), so nothing Meta sent is lost even when this contract
does not model a field yet. An item that cannot be held as JSON at all is kept as
``raw_text`` on an `UnsupportedEvent`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    computed_field,
)

from contracts.dedup import dedup_id
from contracts.values import MAX_EDITS, Id, Millis, Raw, Text

CONTRACT_VERSION: Literal[2] = 2
SUPPORTED_VERSIONS = (1, 2)

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
    """One attachment (or one shared thing); media is referenced, never downloaded.

    `url` is the one to open: the payload's `url`, else its story media URL. The ids of
    what was shared are lifted out of the payload so that a query can use them."""

    type: Text
    url: Text | None = None
    media_id: Text | None = Field(default=None, description="ig_post_media_id / story media")
    reel_id: Text | None = Field(default=None, description="reel_video_id of a shared reel")
    story_id: Text | None = Field(default=None, description="story_media_id of a shared story")
    title: Text | None = Field(default=None, description="the shared post's or reel's caption")
    payload: Raw = Field(default_factory=dict)


class Story(_Model):
    """The story a message replies to (`reply_to.story`) or mentions."""

    id: Text | None = None
    url: Text | None = None


class Referral(_Model):
    """What started the conversation: a click-to-Direct ad, an ig.me link, a product."""

    ref: Text | None = None
    source: Text | None = None
    type: Text | None = None
    ad_id: Text | None = None
    product_id: Text | None = None
    ads_context_data: Raw | None = None


class _EventBase(_Model):
    v: Literal[1, 2] = CONTRACT_VERSION
    account_id: Id = Field(
        description="entry[].id: the Instagram business account the delivery is for"
    )
    sender_id: Id | None = None
    recipient_id: Id | None = None
    timestamp: Millis | None = Field(default=None, description="milliseconds since the epoch")
    source: Literal["messaging", "changes"] = "messaging"
    platform: Literal["instagram", "messenger"] = Field(
        default="instagram", description='messenger for deliveries with object "page"'
    )
    standby: bool = Field(
        default=False, description="delivered in standby[]: another app owns the thread"
    )
    is_test: bool = Field(default=False, description="the App Dashboard's test delivery")
    origin: Literal["webhook", "reconcile"] = "webhook"
    raw: Raw = Field(description="the webhook item as Meta sent it (message text excepted)")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dedup_id(self) -> str:
        """Derived, never trusted from input: the one rule lives in `contracts.dedup`."""
        return dedup_id(vars(self))


class MessageEvent(_EventBase):
    """A new message: text, attachments, replies, story replies, echoes, unsupported."""

    kind: Literal[EventKind.MESSAGE] = EventKind.MESSAGE
    mid: Id = Field(min_length=1)
    direction: Literal["in", "out"] = Field(
        default="in", description="out for echoes: sent by the business account itself"
    )
    is_self: bool = Field(default=False, description="the account messaged itself")
    text: Text | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    reply_to_mid: Id | None = None
    story: Story | None = None
    quick_reply_payload: Text | None = None
    referral: Referral | None = None
    is_unsupported: bool = False


class EditEvent(_EventBase):
    kind: Literal[EventKind.EDIT] = EventKind.EDIT
    mid: Id = Field(min_length=1)
    text: Text | None = None
    num_edit: int = Field(default=0, ge=0, le=MAX_EDITS)


class UnsendEvent(_EventBase):
    kind: Literal[EventKind.UNSEND] = EventKind.UNSEND
    mid: Id = Field(min_length=1)


class ReactionEvent(_EventBase):
    kind: Literal[EventKind.REACTION] = EventKind.REACTION
    mid: Id = Field(min_length=1, description="the reacted message's mid")
    action: Literal["react", "unreact"] = "react"
    reaction: Id | None = None
    emoji: Id | None = None


class ReadEvent(_EventBase):
    kind: Literal[EventKind.READ] = EventKind.READ
    mid: Id | None = None
    watermark: Millis | None = None


class PostbackEvent(_EventBase):
    kind: Literal[EventKind.POSTBACK] = EventKind.POSTBACK
    mid: Id | None = None
    title: Text | None = None
    payload: Text | None = None
    is_self: bool = False


class ReferralEvent(_EventBase):
    kind: Literal[EventKind.REFERRAL] = EventKind.REFERRAL
    ref: Text | None = None
    referral_source: Text | None = None
    referral_type: Text | None = None
    ad_id: Text | None = None
    product_id: Text | None = None
    ads_context_data: Raw | None = None


class ChangeEvent(_EventBase):
    """A `changes` item that is not a messaging event (comments, mentions, insights)."""

    kind: Literal[EventKind.CHANGE] = EventKind.CHANGE
    source: Literal["messaging", "changes"] = "changes"
    field: Id
    object_id: Id | None = Field(default=None, description="value.id when Meta gives one")


class UnsupportedEvent(_EventBase):
    """Anything we do not recognise or cannot hold as it is; stored with its raw item
    (`raw`, or `raw_text` when JSON storage cannot hold it) so nothing is lost."""

    kind: Literal[EventKind.UNSUPPORTED] = EventKind.UNSUPPORTED
    field: Id | None = None
    raw: Raw = Field(default_factory=dict)
    raw_text: Text | None = Field(
        default=None,
        description="the item as JSON text (ASCII, escaped), when jsonb cannot hold it",
    )
    reason: Text | None = Field(default=None, description="why it is not a modelled event")


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
    """Raises `pydantic.ValidationError` on anything that is not a v1 or v2 event."""
    return EVENT_ADAPTER.validate_json(data)


def describe_error(exc: ValidationError) -> str:
    """Where and what is wrong, never the input itself (it may hold message text)."""
    errors = exc.errors(include_input=False, include_url=False)
    if not errors:
        return "not a contract event"
    where = ".".join(str(part) for part in errors[0]["loc"])
    return f"not a contract event: {where}: {errors[0]['msg']}"[:300]
