"""Model runtimes behind CVAT "functions": built-in OpenCV and torch models, loaders for
users' TorchScript and ONNX files, and :class:`~cvat_ray.actors.functions.host.ModelHost`,
the one holder of a loaded model and its calls.

The code here imports neither Ray nor the database (numpy, OpenCV, torch only), so a test,
the CLI and the in-process runner use it without a cluster. It sits in the actors layer
because that is where models run: Serve replicas, the stages of a whole-task run and its
driver hold a ``ModelHost``; ``host.model_process_options`` describes, as plain Ray
options, the process a model needs."""
