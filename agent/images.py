"""Images from the doors (a file, the socket, the HTTP API, a camera) made ready for the model.

Every image is checked (a byte limit, a picture Pillow can read) and shrunk to
vision.max_pixels before it reaches the model: a 12-megapixel photo would cost ~12,000 image
tokens, 640x480 costs 300. Pillow comes with the vision extra.
"""

from __future__ import annotations

import base64
import binascii
import math
from pathlib import Path

from agent.llm.types import Picture
from agent.llm.vision import VISION_EXTRA_HINT


class ImageError(ValueError):
    """An image that cannot be used: unreadable, not an image, or too big."""


def read_image_file(path: Path | str, *, max_bytes: int) -> bytes:
    """The file's bytes, refused with a clear message past `max_bytes` or when unreadable."""
    path = Path(path).expanduser()
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageError(f"{path} is {size:,} bytes, over vision.max_image_bytes ({max_bytes:,}); "
                             "send a smaller picture or raise the setting")
        return path.read_bytes()
    except ImageError:
        raise
    except IsADirectoryError:
        raise ImageError(f"{path} is a folder, not an image file") from None
    except OSError as exc:
        raise ImageError(f"cannot read the image {path}: {exc.strerror or exc}") from None


def decode_base64_image(text: str, name: str, *, max_bytes: int) -> bytes:
    """Bytes from base64 (a data: URL is accepted), refused past `max_bytes` before decoding."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise ImageError(f"{name} is a data: URL without ;base64; send the image base64-encoded")
    if len(text) * 3 // 4 > max_bytes:
        raise ImageError(f"{name} is about {len(text) * 3 // 4:,} bytes, over vision.max_image_bytes ({max_bytes:,})")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{name} is not valid base64; send the image's bytes base64-encoded") from None


def picture_from_bytes(data: bytes, name: str, *, max_pixels: int, max_bytes: int) -> Picture:
    """A Picture of at most `max_pixels` pixels (aspect kept), as PNG; `name` says which
    image in errors (a path, "the image in message 2")."""
    if len(data) > max_bytes:
        raise ImageError(f"{name} is {len(data):,} bytes, over vision.max_image_bytes ({max_bytes:,}); "
                         "send a smaller picture or raise the setting")
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImageError(f"cannot read {name}: images need Pillow and mlx-vlm; {VISION_EXTRA_HINT}") from None
    from io import BytesIO

    Image.MAX_IMAGE_PIXELS = max(max_bytes * 8, 10**8)  # a tiny file that unpacks to gigapixels is refused
    try:
        with Image.open(BytesIO(data)) as opened:
            opened.load()
            image = opened.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ImageError(f"{name} is not an image Pillow can read (PNG, JPEG, WebP, GIF, BMP ...)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name} is a damaged image ({exc}); send the picture again") from None
    width, height = shrunk_size(image.width, image.height, max_pixels)
    if (width, height) != image.size:
        image = image.resize((width, height), Image.Resampling.BICUBIC)
    out = BytesIO()
    image.save(out, format="PNG")
    return Picture(data=out.getvalue(), width=width, height=height)


def pictures_from_base64(texts: list[str], *, max_pixels: int, max_bytes: int, name: str = "picture {n}") -> tuple[Picture, ...]:
    """Pictures from base64 texts (a socket send's, an API message's); `name` with {n} (from
    1) says which one in errors."""
    return tuple(
        picture_from_bytes(decode_base64_image(text, name.format(n=n), max_bytes=max_bytes), name.format(n=n),
                           max_pixels=max_pixels, max_bytes=max_bytes)
        for n, text in enumerate(texts, 1)
    )


def picture_from_file(path: Path | str, *, max_pixels: int, max_bytes: int) -> Picture:
    """A Picture from an image file (errors name the file)."""
    return picture_from_bytes(read_image_file(path, max_bytes=max_bytes), str(path), max_pixels=max_pixels, max_bytes=max_bytes)


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header; None when Pillow is missing or cannot tell."""
    try:
        from io import BytesIO

        from PIL import Image

        with Image.open(BytesIO(data)) as image:
            return image.size
    except Exception:  # no Pillow, or not an image: the daemon says which when it is sent
        return None


def shrunk_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest size with the same aspect and at most `max_pixels` pixels (never larger)."""
    if width * height <= max_pixels:
        return width, height
    scale = math.sqrt(max_pixels / (width * height))
    return max(1, int(width * scale)), max(1, int(height * scale))
