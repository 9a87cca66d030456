"""torchvision models, training, ONNX export and the trained bundles (models/bundles)."""
