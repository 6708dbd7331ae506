"""Runtimes that ship with cvat-ray: the colour detector (torch, exact on synthetic
frames), OpenCV's Haar face and HOG people detectors, GrabCut and the MIL tracker, and the
generic TorchScript/ONNX detectors that run users' files. All work offline."""
