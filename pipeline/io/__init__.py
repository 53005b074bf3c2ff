"""Archive IO: lazy sources (Zarr, OME-Zarr, TIFF, slices, fsspec URLs) and the OME-Zarr mask store."""

from pipeline.io.archive import Archive, open_archive
from pipeline.io.image import LazyImage

__all__ = ["Archive", "LazyImage", "open_archive"]
