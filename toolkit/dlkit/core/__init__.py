"""What several stages share: ONNX graphs and sessions, tensors, data sources, the figures and their formulas,
precision, files written safely, optional dependencies, and the one catalogue of devices and int8 targets. It imports
no stage and never TensorFlow."""
