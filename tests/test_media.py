"""Report photos: only JPEG / PNG / WebP by content, decoded within a pixel budget, stored upright
with no metadata left (checked by Pillow and by the raw bytes), under names that cannot escape
the media folder."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from geo_service.core.errors import InputError, NotFoundError
from geo_service.storage import media
from geo_service.storage.media import (
    CleanPhoto,
    MediaStore,
    PhotoError,
    PhotoTooLarge,
    PhotoTooManyPixels,
    PhotoTypeUnsupported,
    PhotoUnreadable,
    clean_photo,
)

MB = 1 << 20
GPS_IFD = 0x8825
ORIENTATION = 0x0112
MAKE = 0x010F
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
    b'xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="36,42.5N"/>'
    b"</rdf:RDF></x:xmpmeta>"
)


def gps_exif() -> Image.Exif:
    """EXIF naming the phone and where the photo was taken (Weifang)."""
    exif = Image.Exif()
    exif[MAKE] = "PhoneCo"
    exif[GPS_IFD] = {
        1: "N",  # GPSLatitudeRef
        2: (36.0, 42.0, 30.0),  # GPSLatitude
        3: "E",  # GPSLongitudeRef
        4: (119.0, 9.0, 40.0),  # GPSLongitude
        27: b"ASCII\x00\x00\x00GPS",  # GPSProcessingMethod: puts b"GPS" in the file
    }
    return exif


def picture(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """A picture with structure (left half red, right half blue) so orientation shows."""
    image = Image.new(mode, size, "blue")
    image.paste("red", (0, 0, size[0] // 2, size[1]))
    return image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def srgb_icc() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return profile.tobytes()


def assert_no_metadata(data: bytes) -> None:
    out = Image.open(io.BytesIO(data))
    assert len(out.getexif()) == 0
    assert out.getexif().get_ifd(GPS_IFD) == {}
    for key in ("exif", "xmp", "XML:com.adobe.xmp", "icc_profile", "comment", "Comment"):
        assert key not in out.info, key
    for marker in (b"Exif", b"GPS", b"PhoneCo", b"xmpmeta", b"ICC_PROFILE", b"secret"):
        assert marker not in data, marker


# --- metadata is dropped ------------------------------------------------------------------------


def test_jpeg_gps_exif_xmp_icc_and_comment_are_dropped() -> None:
    raw = encode(
        picture(),
        "JPEG",
        exif=gps_exif(),
        xmp=XMP,
        icc_profile=srgb_icc(),
        comment=b"secret comment",
    )
    # The input really carries what must go (else the test below proves nothing).
    original = Image.open(io.BytesIO(raw))
    assert original.getexif().get_ifd(GPS_IFD)[2] == (36.0, 42.0, 30.0)
    for marker in (b"Exif", b"GPS", b"PhoneCo", b"xmpmeta", b"ICC_PROFILE", b"secret"):
        assert marker in raw, marker

    photo = clean_photo(raw, max_bytes=MB)

    assert (photo.media_type, photo.ext, photo.width, photo.height) == ("image/jpeg", "jpg", 64, 48)
    assert_no_metadata(photo.data)
    assert Image.open(io.BytesIO(photo.data)).format == "JPEG"


def test_png_text_chunks_and_exif_are_dropped() -> None:
    info = PngInfo()
    info.add_text("Comment", "secret text")
    info.add_itxt("Description", "secret itxt")
    raw = encode(picture(mode="RGBA"), "PNG", pnginfo=info, exif=gps_exif(), icc_profile=srgb_icc())
    for marker in (b"tEXt", b"iTXt", b"eXIf", b"iCCP"):
        assert marker in raw, marker

    photo = clean_photo(raw, max_bytes=MB)

    assert (photo.media_type, photo.ext) == ("image/png", "png")
    for marker in (b"tEXt", b"iTXt", b"zTXt", b"eXIf", b"iCCP"):
        assert marker not in photo.data, marker
    assert_no_metadata(photo.data)
    out = Image.open(io.BytesIO(photo.data))
    assert out.mode == "RGBA"
    assert out.getpixel((0, 0)) == (255, 0, 0, 255)


def test_webp_is_kept_as_webp_without_metadata() -> None:
    image = picture(mode="RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 8, 8))  # a transparent corner: the alpha must survive
    raw = encode(image, "WEBP", exif=gps_exif(), xmp=XMP, quality=90)
    assert b"EXIF" in raw and b"XMP " in raw

    photo = clean_photo(raw, max_bytes=MB)

    assert (photo.media_type, photo.ext, photo.width, photo.height) == (
        "image/webp",
        "webp",
        64,
        48,
    )
    assert b"EXIF" not in photo.data and b"XMP " not in photo.data
    assert_no_metadata(photo.data)
    out = Image.open(io.BytesIO(photo.data))
    assert out.format == "WEBP" and out.mode == "RGBA"
    corner = out.getpixel((2, 2))
    assert isinstance(corner, tuple) and corner[3] == 0


def test_sha256_and_dimensions_describe_the_cleaned_bytes() -> None:
    import hashlib

    photo = clean_photo(encode(picture(), "PNG"), max_bytes=MB)
    assert photo.sha256 == hashlib.sha256(photo.data).hexdigest()
    assert Image.open(io.BytesIO(photo.data)).size == (photo.width, photo.height)
    with pytest.raises(AttributeError):
        photo.width = 1  # type: ignore[misc]


# --- orientation and size -------------------------------------------------------------------


def test_exif_orientation_6_is_applied_and_removed() -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # the camera was turned: display rotated 90 degrees clockwise
    raw = encode(picture((80, 40)), "JPEG", exif=exif, quality=95)

    photo = clean_photo(raw, max_bytes=MB)

    assert (photo.width, photo.height) == (40, 80)
    out = Image.open(io.BytesIO(photo.data)).convert("RGB")
    assert ORIENTATION not in out.getexif()
    # Turned clockwise, the left (red) half of the stored pixels is on top.
    top, bottom = out.getpixel((20, 5)), out.getpixel((20, 75))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_longest_side_is_cut_to_2048_unless_asked_not_to() -> None:
    raw = encode(Image.new("RGB", (3000, 1000), "green"), "PNG")
    assert (clean_photo(raw, max_bytes=MB).width, clean_photo(raw, max_bytes=MB).height) == (
        2048,
        683,
    )
    kept = clean_photo(raw, max_bytes=MB, max_side=None)
    assert (kept.width, kept.height) == (3000, 1000)


# --- refused ------------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` but whose data is a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def noisy_jpeg() -> bytes:
    return encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG", quality=95)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(encode(picture(), "GIF"), PhotoTypeUnsupported, id="gif"),
        pytest.param(encode(picture(), "BMP"), PhotoTypeUnsupported, id="bmp"),
        pytest.param(encode(picture(), "TIFF"), PhotoTypeUnsupported, id="tiff"),
        pytest.param(b"just some text, saved as photo.jpg\n", PhotoTypeUnsupported, id="text"),
        pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"/>', PhotoTypeUnsupported, id="svg"),
        pytest.param(b"", PhotoUnreadable, id="empty"),
        pytest.param(noisy_jpeg()[: len(noisy_jpeg()) // 2], PhotoUnreadable, id="truncated-jpeg"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 100, PhotoUnreadable, id="jpeg-magic-only"),
        pytest.param(encode(picture(), "PNG")[:60], PhotoUnreadable, id="truncated-png"),
        pytest.param(b"RIFF\x10\x00\x00\x00WEBPVP8 garbage", PhotoUnreadable, id="bad-webp"),
        pytest.param(png_header_only(100_000, 100_000), PhotoTooManyPixels, id="bomb-1e10"),
        pytest.param(png_header_only(7_000, 7_000), PhotoTooManyPixels, id="bomb-49M"),
    ],
)
def test_refused_with_the_right_status(data: bytes, error: type[PhotoError]) -> None:
    with pytest.raises(error) as caught:
        clean_photo(data, max_bytes=MB)
    assert isinstance(caught.value, InputError)
    assert caught.value.field == "photo"
    assert (
        caught.value.status
        == {
            PhotoTypeUnsupported: 415,
            PhotoUnreadable: 422,
            PhotoTooManyPixels: 422,
        }[error]
    )


def test_corrupt_png_checksum_is_unreadable() -> None:
    raw = bytearray(encode(picture(), "PNG"))
    idat = raw.index(b"IDAT")
    raw[idat + 8] ^= 0xFF  # a data byte: the chunk's CRC no longer matches
    with pytest.raises(PhotoUnreadable):
        clean_photo(bytes(raw), max_bytes=MB)


def test_a_real_image_over_the_pixel_budget() -> None:
    raw = encode(Image.new("L", (1000, 1000)), "PNG")
    with pytest.raises(PhotoTooManyPixels) as caught:
        clean_photo(raw, max_bytes=MB, max_pixels=999_999)
    assert caught.value.status == 422
    assert clean_photo(raw, max_bytes=MB, max_pixels=1_000_000).width == 1000


def test_size_is_checked_first() -> None:
    raw = encode(picture(), "PNG")
    with pytest.raises(PhotoTooLarge) as caught:
        clean_photo(raw, max_bytes=len(raw) - 1)
    assert caught.value.status == 413 and caught.value.field == "photo"
    # Before the type: an oversized text file is 413, not 415.
    with pytest.raises(PhotoTooLarge):
        clean_photo(b"x" * 2000, max_bytes=1000)
    assert clean_photo(raw, max_bytes=len(raw)).ext == "png"


def test_field_name_is_the_callers() -> None:
    with pytest.raises(PhotoTypeUnsupported) as caught:
        clean_photo(b"GIF89a", max_bytes=MB, field="photos[2]")
    assert caught.value.field == "photos[2]"


# --- the store ----------------------------------------------------------------------------------


@pytest.fixture
def photo() -> CleanPhoto:
    return clean_photo(encode(picture(), "JPEG"), max_bytes=MB)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_put_writes_content_addressed_and_is_idempotent(tmp_path: Path, photo: CleanPhoto) -> None:
    store = MediaStore(tmp_path / "media")
    name = store.put(photo)

    assert name == f"{photo.sha256[:2]}/{photo.sha256}.jpg"
    assert store.path(name) == tmp_path / "media" / name
    assert store.path(name).read_bytes() == photo.data
    assert store.exists(name) and store.media_type(name) == "image/jpeg"

    assert store.put(photo) == name
    assert files_under(tmp_path / "media") == [tmp_path / "media" / name]  # one file, no temps


def test_put_is_atomic_when_the_write_fails(
    tmp_path: Path, photo: CleanPhoto, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MediaStore(tmp_path)

    def crash(src: str, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(media.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.put(photo)
    assert files_under(tmp_path) == []  # neither a partial photo nor a temp file
    monkeypatch.undo()
    name = store.put(photo)
    assert files_under(tmp_path) == [tmp_path / name]


def test_put_refuses_a_photo_that_does_not_match_its_hash(
    tmp_path: Path, photo: CleanPhoto
) -> None:
    forged = CleanPhoto(b"<script>", photo.media_type, photo.ext, 1, 1, photo.sha256)
    with pytest.raises(ValueError, match="sha256"):
        MediaStore(tmp_path).put(forged)
    assert files_under(tmp_path) == []


def test_each_format_gets_its_media_type(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    for fmt, media_type in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        name = store.put(clean_photo(encode(picture(), fmt), max_bytes=MB))
        assert store.media_type(name) == media_type
        assert name.endswith("." + {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt])


HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "ab/../../etc/passwd",
        "/etc/passwd",
        f"AB/AB{HEX[:62].upper()}.jpg",
        f"01/{HEX}.JPG",
        f"01/{HEX}.jpeg",
        f"01/{HEX}.gif",
        f"ff/{HEX}.jpg",  # the folder is not the hash's first two digits
        f"01/{HEX}.jpg\n",
        f"01/{HEX}.jpg/..",
        f"./01/{HEX}.jpg",
        f"01//{HEX}.jpg",
        f"01\\{HEX}.jpg",
        f"{HEX}.jpg",
        f"01/{HEX[:63]}.jpg",
        f"01/{HEX}0.jpg",
        "",
    ],
)
def test_names_other_than_the_stores_own_are_not_found(tmp_path: Path, name: str) -> None:
    store = MediaStore(tmp_path)
    with pytest.raises(NotFoundError) as caught:
        store.path(name)
    assert caught.value.status == 404
    with pytest.raises(NotFoundError):
        store.media_type(name)
    assert store.exists(name) is False


def test_a_valid_name_not_stored_does_not_exist(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    name = f"01/{HEX}.png"
    assert store.path(name) == tmp_path / name
    assert not store.exists(name)
    assert not os.path.exists(tmp_path / "01")
