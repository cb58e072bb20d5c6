from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EchoRequest(_message.Message):
    __slots__ = ("id", "ts", "payload", "delay_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    ts: int
    payload: bytes
    delay_ms: int
    def __init__(self, id: _Optional[str] = ..., ts: _Optional[int] = ..., payload: _Optional[bytes] = ..., delay_ms: _Optional[int] = ...) -> None: ...

class EchoReply(_message.Message):
    __slots__ = ("id", "ts", "server_ts", "payload")
    ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    SERVER_TS_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    id: str
    ts: int
    server_ts: int
    payload: bytes
    def __init__(self, id: _Optional[str] = ..., ts: _Optional[int] = ..., server_ts: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("since",)
    SINCE_FIELD_NUMBER: _ClassVar[int]
    since: int
    def __init__(self, since: _Optional[int] = ...) -> None: ...

class FeedMessage(_message.Message):
    __slots__ = ("event", "reset", "heartbeat", "goaway")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    GOAWAY_FIELD_NUMBER: _ClassVar[int]
    event: FeedEvent
    reset: FeedReset
    heartbeat: Heartbeat
    goaway: GoAway
    def __init__(self, event: _Optional[_Union[FeedEvent, _Mapping]] = ..., reset: _Optional[_Union[FeedReset, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., goaway: _Optional[_Union[GoAway, _Mapping]] = ...) -> None: ...

class FeedEvent(_message.Message):
    __slots__ = ("seq", "ts", "data")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ts: int
    data: str
    def __init__(self, seq: _Optional[int] = ..., ts: _Optional[int] = ..., data: _Optional[str] = ...) -> None: ...

class FeedReset(_message.Message):
    __slots__ = ("since", "first", "lost")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    since: int
    first: int
    lost: int
    def __init__(self, since: _Optional[int] = ..., first: _Optional[int] = ..., lost: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("server_ts",)
    SERVER_TS_FIELD_NUMBER: _ClassVar[int]
    server_ts: int
    def __init__(self, server_ts: _Optional[int] = ...) -> None: ...

class GoAway(_message.Message):
    __slots__ = ("reconnect_after_ms", "reason")
    RECONNECT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    reconnect_after_ms: int
    reason: str
    def __init__(self, reconnect_after_ms: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ChatMessage(_message.Message):
    __slots__ = ("id", "ts", "text", "server_ts")
    ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SERVER_TS_FIELD_NUMBER: _ClassVar[int]
    id: str
    ts: int
    text: str
    server_ts: int
    def __init__(self, id: _Optional[str] = ..., ts: _Optional[int] = ..., text: _Optional[str] = ..., server_ts: _Optional[int] = ...) -> None: ...
