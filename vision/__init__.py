"""Pixels to field map without torch: rasterio, NumPy, OpenCV and ONNX Runtime."""
