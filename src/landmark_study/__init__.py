"""landmark_study: learning keypoints and landmarks with few or no labels.

Coordinate conventions (used by every module):

* Points are ``(x, y)`` in pixels, last axis of size 2, x to the right, y down.
* Pixel centres sit at integer coordinates: the image of width ``W`` spans
  ``x in [-0.5, W - 0.5]``.
* Heatmaps of size ``(h, w)`` for an image of size ``(H, W)`` use the
  ``align_corners=False`` relation ``x_h = (x + 0.5) * w / W - 0.5``
  (see :func:`landmark_study.heatmaps.image_to_heatmap`).
* Transforms are 3x3 homogeneous matrices acting on image pixel coordinates,
  batched as ``(B, 3, 3)``.
"""

__version__ = "0.1.0"
