"""Images: validation, EXIF orientation, re-encoding, thumbnails (Pillow)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.media.formats import FORMAT_MIME, IMAGE_FORMATS

_EXIF_ORIENTATION = 0x0112
# Orientations that swap width and height.
_TRANSPOSED = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class ImageInfo:
    width: int  # after EXIF orientation
    height: int
    format: str  # Pillow's name
    orientation: int  # EXIF orientation, 1 = as stored

    @property
    def needs_transform(self) -> bool:
        return self.orientation not in (0, 1)


def probe_image(data: bytes, name: str, *, max_pixels: int) -> ImageInfo:
    """Decode the image enough to know it is whole; raise InvalidInput otherwise.

    JPEGs are decoded in draft mode (1/8 scale): the whole entropy stream is still read, so a
    truncated or corrupt file fails, at a fraction of a full decode's cost.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or ""
                if fmt not in IMAGE_FORMATS:
                    raise InvalidInput(f"{name}: unsupported image format {fmt or 'unknown'}.")
                width, height = im.size
                if width * height > max_pixels:
                    raise InvalidInput(
                        f"{name}: the image has {width * height} pixels; at most "
                        f"{max_pixels} are allowed."
                    )
                orientation = exif_orientation(im)
                if fmt in ("JPEG", "MPO"):
                    im.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                im.load()
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"{name}: the image is too large ({exc}).") from exc
    except UnidentifiedImageError as exc:
        raise InvalidInput(f"{name}: not a valid image (unknown or damaged format).") from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise InvalidInput(f"{name}: not a valid image ({exc}).") from exc
    if orientation in _TRANSPOSED:
        width, height = height, width
    return ImageInfo(width=width, height=height, format=fmt, orientation=orientation)


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation (1, upright, when the file has none)."""
    return int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)


def open_upright(data: bytes) -> Image.Image:
    """The decoded image with its EXIF orientation applied."""
    im = Image.open(io.BytesIO(data))
    if exif_orientation(im) == 1:
        return im  # upright already: no transposed copy
    upright = ImageOps.exif_transpose(im)
    return upright if upright is not None else im


def original_frame(data: bytes) -> tuple[bytes, str]:
    """A frame at original quality: the file as uploaded when browsers and Pillow show it
    upright as is, otherwise a lossless PNG with the orientation applied."""
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format or ""
        orientation = exif_orientation(im)
        if orientation in (0, 1) and fmt in FORMAT_MIME:
            return data, FORMAT_MIME[fmt]
    return encode_png(open_upright(data)), "image/png"


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("RGBA", "LA", "P", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey (TIFF): scale to 8 bits.
        return im.point(lambda v: v / 256).convert("RGB")
    return im.convert("RGB")


def encode_jpeg(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    to_rgb(im).save(buf, format="JPEG", quality=max(1, min(quality, 95)))
    return buf.getvalue()


def encode_png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    (im if im.mode in ("RGB", "RGBA", "L", "LA", "I;16") else to_rgb(im)).save(
        buf, format="PNG", compress_level=1
    )
    return buf.getvalue()


def compressed_frame(data: bytes, quality: int) -> bytes:
    """A frame at compressed quality: upright JPEG at the task's image_quality."""
    im = Image.open(io.BytesIO(data))
    if im.format in ("JPEG", "MPO"):
        # Decode straight to RGB (skips a conversion for CMYK/YCbCr sources).
        im.draft("RGB", im.size)
    upright = ImageOps.exif_transpose(im) or im
    return encode_jpeg(upright, quality)


def thumbnail(im: Image.Image, size: int) -> bytes:
    im = to_rgb(im)
    im.thumbnail((size, size))
    return encode_jpeg(im, 85)
