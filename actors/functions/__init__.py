"""Model runtimes behind CVAT "functions": built-in OpenCV and torch models, loaders for
users' TorchScript and ONNX files. Pure Python (numpy, OpenCV, torch): no Ray, no database,
so the same code runs in a Serve replica, a Ray Data actor pool and a test."""
