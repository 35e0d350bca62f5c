"""Running the service unattended: health and readiness probes, Prometheus metrics, request logs, shutdown."""
