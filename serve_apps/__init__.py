"""Ray Serve applications: the FastAPI ingress (routers only) and model deployments."""
