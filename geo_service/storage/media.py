"""Photos of resident reports (随手拍): cleaned before they are kept, kept by content.

A resident's phone photo carries where it was taken (EXIF GPS), the phone, sometimes the owner's
name; none of that may be published with a case. So a photo is never stored as uploaded:
``clean_photo`` caps its size, recognises the format by its bytes (JPEG, PNG or WebP only),
decodes it fully with a pixel budget (no decompression bombs), applies the EXIF orientation and
encodes the pixels again with no metadata at all. ``MediaStore`` keeps the cleaned bytes under
their SHA-256 (the same photo twice is one file), written atomically, and accepts back only names
of exactly the form it gives out, so no name can reach outside its folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageOps

from geo_service.core.errors import InputError, NotFoundError

MAX_SIDE: Final = 2048
JPEG_QUALITY: Final = 85
WEBP_QUALITY: Final = 85

_EXTENSIONS: Final = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
_MEDIA_TYPES: Final = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
_NAME = re.compile(r"(?P<fan>[0-9a-f]{2})/(?P=fan)[0-9a-f]{62}\.(?P<ext>jpg|png|webp)")


class PhotoError(InputError):
    """A photo the service will not keep; ``status`` says why (413, 415 or 422)."""

    status = 422


class PhotoTooLarge(PhotoError):
    status = 413


class PhotoTypeUnsupported(PhotoError):
    status = 415


class PhotoUnreadable(PhotoError):
    """Claims to be JPEG, PNG or WebP but does not decode (truncated, corrupt, empty)."""

    status = 422


class PhotoTooManyPixels(PhotoError):
    status = 422


@dataclass(frozen=True, slots=True)
class CleanPhoto:
    """Re-encoded pixels with no metadata, ready to store and to serve."""

    data: bytes
    media_type: str
    ext: str
    width: int
    height: int
    sha256: str


def _sniff(data: bytes) -> str | None:
    """The Pillow format the leading bytes announce, or None (never trusts a name or a header)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _decode(data: bytes, fmt: str, max_pixels: int, field: str) -> Image.Image:
    """Open, check the pixel budget from the header, then decode every pixel."""
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as probe:
            width, height = probe.size
            if width * height > max_pixels:
                raise PhotoTooManyPixels(
                    f"the photo has too many pixels ({width} x {height}; at most "
                    f"{max_pixels:,} allowed)",
                    field,
                )
            probe.verify()  # checksums (PNG CRCs) and structure, without decoding pixels
        image = Image.open(io.BytesIO(data), formats=[fmt])
        image.load()
    except PhotoError:
        raise
    except Image.DecompressionBombError as exc:
        raise PhotoTooManyPixels("the photo has too many pixels", field) from exc
    except MemoryError:
        raise
    except Exception as exc:  # any failure to decode untrusted bytes means a corrupt file
        raise PhotoUnreadable(f"the photo could not be read as {fmt}", field) from exc
    return image


def _encode(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image.save(out, "JPEG", quality=JPEG_QUALITY, optimize=True)
    elif fmt == "PNG":
        image.save(out, "PNG", optimize=False)
    else:
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        image.save(out, "WEBP", quality=WEBP_QUALITY)
    return out.getvalue()


def clean_photo(
    data: bytes,
    max_bytes: int,
    max_pixels: int = 40_000_000,
    *,
    max_side: int | None = MAX_SIDE,
    field: str = "photo",
) -> CleanPhoto:
    """``data`` as a JPEG, PNG or WebP of the same format, upright, with no metadata.

    Checks, in this order: at most ``max_bytes`` (413), leading bytes of JPEG / PNG / WebP (415),
    at most ``max_pixels`` by the header and then a full decode (422). The longest side is cut
    to ``max_side`` pixels (``None``: never). Only the first frame of an animation is kept.
    """
    if len(data) > max_bytes:
        raise PhotoTooLarge(
            f"the photo is {len(data):,} bytes; at most {max_bytes:,} bytes allowed", field
        )
    if not data:
        raise PhotoUnreadable("the photo is empty", field)
    fmt = _sniff(data)
    if fmt is None:
        raise PhotoTypeUnsupported("the photo must be a JPEG, PNG or WebP image", field)
    image = _decode(data, fmt, max_pixels, field)
    try:
        try:
            upright = ImageOps.exif_transpose(image)
        except Exception:  # a malformed EXIF block: keep the pixels as they are (EXIF is dropped)
            upright = image.copy()
        if max_side is not None and max(upright.size) > max_side:
            upright.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        # Only the pixels go on: every encoder reads some metadata (ICC profile, comment, ...)
        # from ``info``, so nothing but transparency (which is pixels) is left in it.
        clean = upright.copy()
        kept = upright.info.get("transparency")
        clean.info = {} if kept is None else {"transparency": kept}
        encoded = _encode(clean, fmt)
    except PhotoError:
        raise
    except (OSError, ValueError) as exc:  # a decodable photo in a mode that will not convert
        raise PhotoUnreadable("the photo could not be processed", field) from exc
    finally:
        image.close()
    ext = _EXTENSIONS[fmt]
    return CleanPhoto(
        data=encoded,
        media_type=_MEDIA_TYPES[ext],
        ext=ext,
        width=clean.width,
        height=clean.height,
        sha256=hashlib.sha256(encoded).hexdigest(),
    )


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MediaStore:
    """Cleaned photos in ``folder`` as ``<sha256[:2]>/<sha256>.<ext>``, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def put(self, photo: CleanPhoto) -> str:
        """Store ``photo`` (once: the same bytes are one file) and return its name."""
        digest = hashlib.sha256(photo.data).hexdigest()
        if digest != photo.sha256 or photo.ext not in _MEDIA_TYPES:
            raise ValueError("CleanPhoto does not match its own sha256 or extension")
        name = f"{digest[:2]}/{digest}.{photo.ext}"
        target = self.path(name)
        if target.is_file():
            return name
        self.folder.mkdir(parents=True, exist_ok=True)
        fan = target.parent
        if not fan.is_dir():
            fan.mkdir(exist_ok=True)
            _fsync_dir(self.folder)
        fd, tmp_name = tempfile.mkstemp(dir=fan, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)
                fh.write(photo.data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        _fsync_dir(fan)
        return name

    def path(self, name: str) -> Path:
        """The file a name given out by ``put`` stands for; any other name is NotFoundError.

        Only the name is checked, not that the file exists (see ``exists``).
        """
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise NotFoundError("no such photo", "photo")
        return self.folder / name

    def media_type(self, name: str) -> str:
        self.path(name)
        return _MEDIA_TYPES[name.rsplit(".", 1)[1]]

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a valid name and the photo is stored (False for any bad name)."""
        try:
            return self.path(name).is_file()
        except NotFoundError:
            return False
