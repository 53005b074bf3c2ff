"""segment-archive: U-Net segmentation of large microscopy archives.

The import package is ``pipeline``; the console script is ``segment-archive``.
"""

__version__ = "0.1.0"
