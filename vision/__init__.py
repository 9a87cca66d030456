"""Pixels to field map without torch: rasterio, NumPy, OpenCV and ONNX Runtime."""

import warnings

from rasterio.errors import NotGeoreferencedWarning

# Khet reports georeference itself (summary.json "georeference"); GDAL's warning adds only noise.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
