"""The reference target services: REST, SSE, WebSocket and gRPC around one event feed."""
