"""Which target class serves which protocol name (imported lazily: gRPC is heavy)."""

from __future__ import annotations

import importlib

from .base import Target

#: protocol name -> "module:Class" under wirelab.targets
_TARGETS = {
    "rest": "rest:RestTarget",
    "sse": "sse:SseTarget",
    "ws": "ws:WebSocketTarget",
    "grpc": "grpc_target:GrpcTarget",
}

PROTOCOLS: tuple[str, ...] = tuple(_TARGETS)


def target_class(protocol: str) -> type[Target]:
    """The :class:`Target` subclass for ``protocol``; ``KeyError`` if there is none."""
    module_name, class_name = _TARGETS[protocol].split(":")
    module = importlib.import_module(f"wirelab.targets.{module_name}")
    return getattr(module, class_name)
