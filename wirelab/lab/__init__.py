"""Running the lab: local processes now; the Kubernetes orchestrator shares the interface."""
