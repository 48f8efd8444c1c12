"""Readers for ordinary images and whole-slide images behind one small interface.

``open_slide(path)`` picks the reader: files with a whole-slide extension (.svs, .tif/.tiff, .ndpi, ...) are
first tried with OpenSlide (``openslide.OpenSlide.detect_format``); a TIFF that OpenSlide does not recognise
(not tiled, so not a pyramid) falls back to the ordinary image reader (Pillow, then tifffile). Coordinates
given to ``read_region`` are pixels *at the requested level*, unlike OpenSlide's own ``read_region`` whose
location is in level-0 pixels.

Every failure is a :class:`~histosynth.errors.DataError` that names the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from histosynth.errors import DataError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
WSI_EXTS = {".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif"}
SUPPORTED_EXTS = IMAGE_EXTS | WSI_EXTS
MAX_IMAGE_PIXELS = 400_000_000  # an ordinary image is decoded whole; bigger ones should be pyramidal TIFFs


class SlideReader(Protocol):
    path: Path
    kind: str  # "openslide" or "image"
    level_dimensions: list[tuple[int, int]]  # (width, height) per level
    level_downsamples: list[float]

    @property
    def level_count(self) -> int: ...

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray: ...

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]: ...

    def close(self) -> None: ...


def _composite_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA -> RGB over a white background (OpenSlide marks pixels outside the scanned area transparent)."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha[..., None].astype(np.float32) / 255.0
    out = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class OpenSlideReader:
    kind = "openslide"

    def __init__(self, path: Path):
        import openslide

        self.path = path
        try:
            self._slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, OSError) as e:
            raise DataError(f"cannot open whole-slide image '{path}': {e}", "the file is corrupt or truncated: re-copy or re-download it, or remove it from the folder") from e
        self.level_dimensions = [tuple(int(v) for v in d) for d in self._slide.level_dimensions]
        self.level_downsamples = [float(d) for d in self._slide.level_downsamples]
        self.vendor = openslide.OpenSlide.detect_format(str(path))

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        ds = self.level_downsamples[level]
        try:
            region = self._slide.read_region((int(round(x * ds)), int(round(y * ds))), level, (int(width), int(height)))
        except Exception as e:  # openslide raises OpenSlideError on corrupt tiles
            raise DataError(f"cannot read a region of '{self.path}' (level {level}, x={x}, y={y}): {e}", "the slide is corrupt: re-copy or re-download it, or remove it (or pass --skip-bad)") from e
        return _composite_white(np.asarray(region))

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        w0, h0 = self.level_dimensions[0]
        scale = min(1.0, max_side / max(w0, h0))
        size = (max(1, int(round(w0 * scale))), max(1, int(round(h0 * scale))))
        try:
            thumb = self._slide.get_thumbnail(size).convert("RGB")
        except Exception as e:
            raise DataError(f"cannot read '{self.path}': {e}", "the slide is corrupt: re-copy or re-download it, or remove it") from e
        arr = np.asarray(thumb)
        return arr, arr.shape[1] / w0

    def close(self) -> None:
        self._slide.close()


class ImageReader:
    """A whole ordinary image in memory; a single level."""

    kind = "image"

    def __init__(self, path: Path, array: np.ndarray | None = None):
        self.path = path
        self.array = array if array is not None else _load_image(path)
        h, w = self.array.shape[:2]
        self.level_dimensions = [(w, h)]
        self.level_downsamples = [1.0]

    @property
    def level_count(self) -> int:
        return 1

    def read_region(self, x: int, y: int, level: int, width: int, height: int) -> np.ndarray:
        if level != 0:
            raise DataError(f"'{self.path}' is an ordinary image with a single level; level {level} does not exist", "use --level 0 for ordinary images (only pyramidal whole-slide images have more levels)")
        out = np.full((height, width, 3), 255, np.uint8)
        h, w = self.array.shape[:2]
        crop = self.array[max(0, y) : min(h, y + height), max(0, x) : min(w, x + width)]
        out[max(0, -y) : max(0, -y) + crop.shape[0], max(0, -x) : max(0, -x) + crop.shape[1]] = crop
        return out

    def thumbnail(self, max_side: int) -> tuple[np.ndarray, float]:
        h, w = self.array.shape[:2]
        if max(h, w) <= max_side:
            return self.array, 1.0
        from PIL import Image

        scale = max_side / max(h, w)
        size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
        thumb = np.asarray(Image.fromarray(self.array).resize(size, Image.BILINEAR))
        return thumb, thumb.shape[1] / w

    def close(self) -> None:
        pass


def _to_rgb_uint8(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DataError(f"'{path}' has array shape {arr.shape}, not an RGB image", "convert it to an 8-bit RGB PNG/TIFF (brightfield microscopy) or remove it")
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16:
            arr = (arr // 257).astype(np.uint8)
        else:
            raise DataError(f"'{path}' has pixel type {arr.dtype}", "convert it to 8-bit RGB or remove it")
    if arr.shape[2] == 4:
        arr = _composite_white(arr)
    return np.ascontiguousarray(arr)


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGB",):
                return np.asarray(im).copy()
            if im.mode in ("RGBA", "LA", "P", "PA"):
                return _to_rgb_uint8(np.asarray(im.convert("RGBA")), path)
            if im.mode in ("L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
                return np.asarray(im.convert("RGB")).copy()
            if im.mode.startswith("I;16"):
                return _to_rgb_uint8(np.asarray(im).astype(np.uint16), path)
            raise DataError(f"'{path}' has pixel mode {im.mode}", "convert it to 8-bit RGB or remove it")
    except Image.DecompressionBombError as e:
        raise DataError(f"'{path}' is too large to decode whole ({e})", "convert it to a tiled pyramidal TIFF (e.g. with pyvips tiffsave --tile --pyramid) so it is read region by region") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        if path.suffix.lower() in (".tif", ".tiff"):
            try:
                import tifffile

                return _to_rgb_uint8(tifffile.imread(path), path)
            except DataError:
                raise
            except Exception:
                pass
        raise DataError(f"cannot read image '{path}': {e}", "the file is corrupt, truncated or not an image: re-copy or re-download it, or remove it from the folder (or pass --skip-bad)") from e


def open_slide(path: str | Path) -> SlideReader:
    """Open an ordinary image or a whole-slide image; OpenSlide is tried first for whole-slide formats."""
    path = Path(path)
    ext = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"'{path}' does not exist or is not a file")
    if ext not in SUPPORTED_EXTS:
        raise DataError(
            f"'{path}' has an unsupported format '{ext or '(no extension)'}'",
            f"supported: {', '.join(sorted(SUPPORTED_EXTS))}; convert it or move it out of the class folder (or pass --skip-bad)",
        )
    if path.stat().st_size == 0:
        raise DataError(f"'{path}' is empty (0 bytes)", "re-copy or re-download it, or remove it")
    if ext in WSI_EXTS:
        import openslide

        try:
            vendor = openslide.OpenSlide.detect_format(str(path))
        except Exception:
            vendor = None
        if vendor is not None:
            return OpenSlideReader(path)
        if ext not in IMAGE_EXTS:
            raise DataError(f"OpenSlide does not recognise '{path}' as a whole-slide image", "the file is corrupt or of a vendor format OpenSlide cannot read; re-export it as a tiled pyramidal TIFF")
    return ImageReader(path)
