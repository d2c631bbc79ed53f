"""Reading images and videos as float RGB arrays, writing clips as .mp4, .gif or a folder of PNGs.

Arrays are (N, H, W, 3) float32 RGB in [0, 1] (ComfyUI's IMAGE layout). OpenCV does the video codecs,
Pillow writes GIFs (OpenCV builds before 4.11 cannot). Pillow reads
an image's header first: its size is checked against the pixel limit and the memory available before
anything is decoded (memory.py), and its EXIF orientation is applied as `ImageOps.exif_transpose`
would (phone photos come out upright). Videos are decoded frame by frame into one preallocated
array, after an estimate of its size. Outputs are written to a temporary name (a PNG folder: a
temporary folder) and renamed, so a failure never leaves a half output nor removes the old one; an
existing output is replaced only with `overwrite=True`, and a folder of frames only when its manifest
(`.mardini-frames.json`: each frame's name and sha256) shows that MarDini wrote everything in it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path

import tempfile
import warnings

import cv2
import numpy as np

from .atomic import atomic_path
from . import opencv_paths
from .errors import InputError, OutputError
from .memory import check_fits
from .outputs import disk_full

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MP4_CODECS = ("avc1", "mp4v")  # H.264 where the OpenCV build has an encoder (plays in browsers), else MPEG-4
MAX_PIXELS = 1 << 30  # OpenCV's own decoding limit (CV_IO_MAX_IMAGE_PIXELS); Pillow's bomb check may refuse earlier
GIF_MAX_SIDE = 65535  # a GIF stores its width and height in 16 bits
# EXIF orientation -> the NumPy view ImageOps.exif_transpose gives (rows, columns, channels)
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


_PILLOW_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La", "RGBa"}  # 8 bits a channel


def image_header(path: Path) -> tuple[int, int, int, bool] | None:
    """(width, height, EXIF orientation 1..8, whether Pillow decodes it) from the file's header, without
    decoding it; None when Pillow does not know the format (OpenCV may still read it). Pillow decodes
    8-bit images other than PNG (OpenCV's TIFF reader applies a file's orientation by itself, so two
    readers would disagree); PNG and 16-bit or float images go to OpenCV, which keeps their depth."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # Pillow is a dependency; without it images are read unchecked and unrotated
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                pillow = im.format != "PNG" and im.mode in _PILLOW_MODES
                try:
                    orientation = int(im.getexif().get(0x0112, 1))
                except Exception:  # a damaged EXIF block: the pixels are still fine
                    orientation = 1
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) // 10**6
        raise InputError(
            f"{path.name} claims {int(claimed.group(1)) // 10**6 if claimed else 'too many'} megapixels, more than the "
            f"{limit} an image may have to be read safely; resize it"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return width, height, orientation if orientation in _ORIENT else 1, pillow


def _read_with_pillow(path: Path) -> np.ndarray | None:
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im = ImageOps.exif_transpose(im)
                if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
                    im = im.convert("RGBA")  # drop alpha as OpenCV's path does: the colour under it, not blended
                return np.asarray(im.convert("RGB"), np.float32) / 255
    except (OSError, ValueError, SyntaxError):
        return None


def truncated_format(path: Path) -> str | None:
    """"JPEG" or "PNG" when the file is one whose end marker is missing (cut short: decoders fill the rest
    with grey and say nothing), else None."""
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(0, path.stat().st_size - 64))
        tail = f.read()
    if head.startswith(b"\xff\xd8\xff") and b"\xff\xd9" not in tail:
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" not in tail:
        return "PNG"
    return None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """One image file -> (H, W, 3) float32 RGB in [0, 1] (alpha dropped, grey expanded, 16-bit kept, EXIF
    orientation applied). Its size is checked from the header before decoding."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image {path} does not exist; check the path")
    if fmt := truncated_format(path):
        raise InputError(f"{path.name} is cut short (its {fmt} data stops before the end marker) and would read as grey; "
                         "copy or export the image again")
    header = image_header(path)
    if header is not None:
        width, height = header[:2]
        if width * height > MAX_PIXELS:
            raise InputError(f"{path.name} claims {width}x{height} pixels, more than the {MAX_PIXELS // 10**6} megapixels an image may have; resize it")
        check_fits(width * height * (3 * 4 + 8), f"reading {path.name} ({width}x{height})", "resize the image first")
    if header is not None and header[3]:
        rgb = _read_with_pillow(path)
        if rgb is None:
            raise InputError(f"cannot read {path} as an image (damaged or truncated); use PNG or JPG")
        return rgb
    image = opencv_paths.imread(path)
    if image is None:
        raise InputError(f"cannot read {path} as an image; use PNG or JPG")
    rgb = _to_rgb_float(image)
    if header is not None and header[2] != 1:
        rgb = np.ascontiguousarray(_ORIENT[header[2]](rgb))
    return rgb


def header_frames(claimed: float, path: Path) -> int:
    """A container's frame count, bounded by the file's size (every frame takes at least a byte of it): a
    header claiming 10^9 frames of a small file is not believed into an allocation."""
    if not (claimed and claimed == claimed and claimed > 0):  # missing, NaN or negative: unknown
        return 0
    return int(min(claimed, path.stat().st_size))


def read_images(paths, size: tuple[int, int] | None = None) -> np.ndarray:
    """Several image files -> (N, H, W, 3): of one size, or each resized and centre-cropped to `size`
    (width, height) when given, so --size applies before the sizes are compared."""
    paths = list(paths)
    if size is not None:
        check_fits(len(paths) * size[0] * size[1] * 3 * 4 * 2, f"{len(paths)} image(s) at {size[0]}x{size[1]}", "pass a smaller --size")
    else:  # the whole request from the headers, before any image is decoded
        pixels = sum(w * h for w, h, *_ in filter(None, (image_header(Path(p)) for p in paths if Path(p).is_file())))
        check_fits(pixels * (3 * 4 + 8), f"{len(paths)} images of {pixels // 10**6} megapixels in all",
                   "give fewer or smaller images, or pass --size WxH")
    images = []
    for p in paths:
        image = read_image(p)
        if size is not None and image.shape[1::-1] != tuple(size):
            image = resize_and_crop(image[None], *size)[0]
        images.append(image)
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        listed = ", ".join(f"{Path(p).name} {im.shape[1]}x{im.shape[0]}" for p, im in zip(paths, images))
        raise InputError(f"input images differ in size ({listed}); resize them to one size or pass --size WxH")
    return np.stack(images)


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """A video file -> ((N, H, W, 3) frames, frames per second); at most `max_frames` from the start.

    The frame count and size from the container are checked against the memory available first; frames
    are then decoded one at a time into one preallocated float32 array (never a list of all frames
    beside their stacked copy)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {path} does not exist; check the path")
    with opencv_paths.for_reading(path) as name:
        capture = cv2.VideoCapture(name)  # opened now: the name may go once it is
    try:
        count = header_frames(capture.get(cv2.CAP_PROP_FRAME_COUNT), path)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        expected = min(count, max_frames) if max_frames is not None and count > 0 else (count or max_frames or 0)
        if expected > 0 and width > 0 and height > 0:
            check_fits(expected * width * height * 3 * 4, f"{path.name}: {expected} frames of {width}x{height}",
                       "read fewer frames (--video-frames N) or use a shorter or smaller video")
        frames: np.ndarray | None = None
        n = 0
        while max_frames is None or n < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            rgb = _to_rgb_float(frame)
            if frames is None or n == len(frames) or frames.shape[1:] != rgb.shape:
                if frames is not None and frames.shape[1:] != rgb.shape:
                    raise InputError(f"{path.name} changes its frame size at frame {n}; re-encode it at one size")
                grow = expected - n if expected > n else max(8, n)  # the container's count, else doubling
                grow = min(grow, max_frames - n) if max_frames is not None else grow
                check_fits((n + grow) * rgb.nbytes, f"{path.name}: {n + grow} frames of {rgb.shape[1]}x{rgb.shape[0]}",
                           "read fewer frames (--video-frames N) or use a shorter or smaller video")
                bigger = np.empty((n + grow, *rgb.shape), np.float32)
                if frames is not None:
                    bigger[:n] = frames[:n]
                frames = bigger
            frames[n] = rgb
            n += 1
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    finally:
        capture.release()
    if frames is None or n == 0:
        raise InputError(f"cannot read any frame from {path}; use a video OpenCV can decode (e.g. .mp4 with H.264 or MPEG-4)")
    return frames[:n], fps


def _to_rgb_float(image: np.ndarray) -> np.ndarray:
    scale = float(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 1.0
    if image.ndim == 2:
        image = image[:, :, None].repeat(3, axis=2)
    return (image[:, :, 2::-1].astype(np.float32) / scale).clip(0, 1)  # BGR(A) -> RGB


def resize_and_crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale (N, H, W, 3) to cover width x height keeping the aspect ratio, then crop the centre."""
    n, h, w, _ = frames.shape
    scale = max(width / w, height / h)
    sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    top, left = (sh - height) // 2, (sw - width) // 2
    out = [cv2.resize(f, (sw, sh), interpolation=interp)[top : top + height, left : left + width] for f in frames]
    return np.stack(out).clip(0, 1)


def write_frames(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0, overwrite: bool = False) -> Path:
    """Write (N, H, W, 3) floats in [0, 1] as `.mp4`, `.gif`, or PNG frames in a folder (no suffix)."""
    path = Path(path)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise InputError(f"frames to write must have shape (frames, height, width, 3), got {frames.shape}")
    check_output(path, overwrite)
    check_fps(fps)
    check_frame_size(path, frames.shape[2], frames.shape[1])
    suffix = path.suffix.lower()
    pixels = (np.asarray(frames, dtype=np.float32).clip(0, 1) * 255 + 0.5).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == "":
        _write_png_folder(pixels, path)
    else:
        writer = _write_mp4 if suffix == ".mp4" else _write_gif
        with atomic_path(path, suffix) as tmp:
            writer(pixels, tmp, fps)
    return path


def check_output(path: str | os.PathLike, overwrite: bool = False) -> None:
    """Raise InputError for an output name we cannot or may not write (callers check before long work)."""
    path = Path(path)
    if Path(os.path.normpath(path)).name in ("", ".", ".."):  # "", ".", "a/..": a folder the user already has
        raise InputError(f"the output {os.fspath(path)!r} names no new file or folder; give e.g. out.mp4, out.gif or a new folder name")
    if path.suffix.lower() not in (".mp4", ".gif", ""):
        raise InputError(f"cannot write {path.name}: use an .mp4 or .gif file name, or a folder name for PNG frames")
    if path.suffix and path.is_dir():
        raise InputError(f"{path} is a folder; give a new .mp4 or .gif file name, or a folder name (no suffix) for PNG frames")
    if path.exists() and not overwrite and not (path.is_dir() and not any(path.iterdir())):
        raise InputError(f"{path} already exists; choose another output name or pass --overwrite")
    if path.is_dir() and path.suffix == "":
        _check_only_frames(path)


def check_frame_size(path: str | os.PathLike, width: int, height: int) -> None:
    """Raise InputError for frames the output format cannot hold (callers check before long work)."""
    if Path(path).suffix.lower() == ".gif" and max(width, height) > GIF_MAX_SIDE:
        raise InputError(
            f"a GIF is at most {GIF_MAX_SIDE} pixels a side, the frames are {width}x{height}; "
            "write an .mp4 or a folder of PNG frames, or pass a smaller --size"
        )


FPS_RANGE = (0.01, 1000.0)  # a GIF frame lasts 1/100 s to 655 s; players handle no more either way


def check_fps(fps: float) -> None:
    """Raise InputError unless fps is a number in FPS_RANGE (0 divided by zero in the GIF writer, and
    1e-9 overflowed its 16-bit frame delay)."""
    low, high = FPS_RANGE
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and low <= fps <= high):
        raise InputError(f"frames per second must be a number from {low:g} to {high:g}, got {fps!r}")


FRAMES_MANIFEST = ".mardini-frames.json"  # in a folder of PNG frames: each frame's name and sha256, as written
MANIFEST_MAX_BYTES = 1 << 20


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _written_frames(folder: Path) -> dict[str, str]:
    """The frames MarDini wrote into `folder` by its manifest ({} when there is none, or it is not ours)."""
    manifest = folder / FRAMES_MANIFEST
    if manifest.is_symlink() or not manifest.is_file() or manifest.stat().st_size > MANIFEST_MAX_BYTES:
        return {}
    try:
        frames = json.loads(manifest.read_text(encoding="utf-8")).get("frames")
    except (ValueError, UnicodeDecodeError, AttributeError, OSError):
        return {}
    return {k: v for k, v in frames.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(frames, dict) else {}


def _check_only_frames(folder: Path) -> None:
    """--overwrite replaces only a folder of PNG frames MarDini wrote, as its manifest lists them (name and
    content): never a folder holding anything else, frames a user put there or changed, or a link."""
    written = _written_frames(folder)
    others = sorted(p.name for p in folder.iterdir() if p.name != FRAMES_MANIFEST and not (
        p.name in written and p.is_file() and not p.is_symlink() and _sha256(p) == written[p.name]))
    if others:
        raise InputError(
            f"{folder} holds files MarDini did not write ({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); "
            "only a folder of MarDini's own frames is replaced: choose a new folder name"
        )


def _write_png_folder(pixels: np.ndarray, folder: Path) -> None:
    """Write the frames into a temporary folder beside `folder`, then swap it in: a failure part-way
    leaves the old frames (or nothing) under the name, never a mix or an empty folder. An existing folder has
    passed write_frames' check_output just before (MarDini's own frames, by their manifest)."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file; give a folder name for PNG frames, or an .mp4/.gif name")
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        for i, frame in enumerate(pixels):
            if not opencv_paths.imwrite(staging / f"frame_{i:05d}.png", frame[:, :, ::-1]):
                if disk_full(folder.parent):
                    raise OutputError(f"the disk holding {folder.parent} is full; free space or write the frames elsewhere")
                raise OutputError(f"could not write PNG frames into {folder.parent}; check the folder's permissions and free space")
        written = {f.name: _sha256(f) for f in sorted(staging.iterdir())}
        (staging / FRAMES_MANIFEST).write_text(json.dumps({"frames": written}, indent=0), encoding="utf-8")
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's folders are private; the output is an ordinary folder
        old = None
        if folder.is_dir():
            old = folder.with_name(f".{folder.name}.{os.getpid()}.{os.urandom(4).hex()}.old")
            os.replace(folder, old)
        try:
            os.replace(staging, folder)
        except OSError:
            if old is not None:
                os.replace(old, folder)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _quiet_stderr():
    """Silence native stderr (FFmpeg prints a complaint for every encoder it cannot open)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a windowed host): nothing to silence
        yield
        return
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _write_mp4(pixels: np.ndarray, path: Path, fps: float) -> None:
    n, h, w, _ = pixels.shape
    with opencv_paths.for_writing(path) as name:
        for codec in MP4_CODECS:
            with _quiet_stderr():
                writer = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*codec), float(fps), (w, h))
            if writer.isOpened():
                break
        else:
            _raise_if_disk_full(path)
            raise InputError("this OpenCV build cannot write .mp4 (no avc1 or mp4v encoder); write a .gif or a folder of PNGs")
        for frame in pixels:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
        writer.release()
        capture = cv2.VideoCapture(name)
        count = 0
        while capture.read()[0]:
            count += 1
        capture.release()
    if count != n:
        _raise_if_disk_full(path)
        raise InputError(f"the written .mp4 re-opens with {count} of {n} frames; write a .gif or a folder of PNGs instead")


def _raise_if_disk_full(path: Path) -> None:
    """A writer that fails on a full disk must say so, not blame the codec."""
    if disk_full(path.parent):
        raise OutputError(f"the disk holding {path.parent} is full; free space or write the output elsewhere (nothing was written)")


def _write_gif(pixels: np.ndarray, path: Path, fps: float) -> None:
    """Pillow writes the GIF: every frame in one fixed colour cube (Pillow's web palette, so colours never
    flicker from frame to frame and black and white stay exact), Floyd-Steinberg dithered, looping forever.
    Pillow stores a frame identical to the one before as a longer delay of that one: the clip plays the same."""
    from PIL import Image

    frames = [Image.fromarray(frame).convert("P", palette=Image.Palette.WEB, dither=Image.Dither.FLOYDSTEINBERG)
              for frame in pixels]
    delay = max(2, round(100 / fps))  # hundredths of a second, as a GIF stores it; browsers treat < 2 as slow
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=delay * 10, loop=0)
