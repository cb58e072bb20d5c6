"""The four target protocols: their order, default ports and how users are told where they are.

One definition for the CLI, the local lab, the replicated lab, the cluster roles and the
user classes.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "DEFAULT_PORTS",
    "PROTOCOL_ORDER",
    "URL_VARIABLES",
    "target_urls",
    "url_environment",
    "urls_from_environment",
]

#: The target protocols, in the order ``--port-base`` assigns ports to them.
PROTOCOL_ORDER: tuple[str, ...] = ("rest", "sse", "ws", "grpc")

#: Where the reference targets listen by default (``--port-base 8080``), and where
#: ``--target-host`` expects a user's own.
DEFAULT_PORTS: dict[str, int] = {
    protocol: 8080 + index for index, protocol in enumerate(PROTOCOL_ORDER)
}

#: The environment variable each protocol's users read their target address from.
URL_VARIABLES: dict[str, str] = {
    "rest": "WIRELAB_REST_URL",
    "sse": "WIRELAB_SSE_URL",
    "ws": "WIRELAB_WS_URL",
    "grpc": "WIRELAB_GRPC_TARGET",
}


def target_urls(host: str, ports: Mapping[str, int]) -> dict[str, str]:
    """How each protocol's users reach a target on ``host``."""
    urls: dict[str, str] = {}
    for protocol, port in ports.items():
        if protocol == "grpc":
            urls[protocol] = f"{host}:{port}"
        elif protocol == "ws":
            urls[protocol] = f"ws://{host}:{port}"
        else:
            urls[protocol] = f"http://{host}:{port}"
    return urls


def url_environment(urls: Mapping[str, str]) -> dict[str, str]:
    """The environment variables that tell the user classes where ``urls`` are."""
    return {
        URL_VARIABLES[protocol]: url for protocol, url in urls.items() if protocol in URL_VARIABLES
    }


def urls_from_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The inverse of :func:`url_environment`: the targets ``env`` points the users at."""
    return {protocol: env[name] for protocol, name in URL_VARIABLES.items() if env.get(name)}
