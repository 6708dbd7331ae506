"""Names shared by the processes of one deployment (Ray namespace, Serve apps, deployments)."""

NAMESPACE = "cvat-ray"
API_APP = "cvat-api"
API_DEPLOYMENT = "ApiIngress"
FUNCTION_DEPLOYMENT = "function"
