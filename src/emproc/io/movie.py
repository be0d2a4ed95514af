"""Read dose-fractionated movies: MRC, TIFF (incl. LZW/deflate) and EER.

Movies come back as `(frames, ny, nx)` arrays in the file's own dtype (counts stay
uint8/uint16), memory-mapped where the format allows it, so callers stream frames
instead of holding a float copy of the whole movie.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from struct import error as struct_error  # raised by tifffile on some damaged headers

import mrcfile
import numpy as np
import tifffile

MRC_SUFFIXES = (".mrc", ".mrcs", ".st")
TIFF_SUFFIXES = (".tif", ".tiff")
EER_SUFFIXES = (".eer",)


class MovieError(ValueError):
    """A movie file cannot be used; the message names the file and the problem."""


class MovieFormatError(MovieError):
    """Unknown, corrupt, truncated or empty movie file."""


@dataclass(frozen=True)
class MovieHeader:
    """What a movie file says about itself, before any pixel is decoded.

    `number_of_frames` is the number of frames `read_movie` returns; for EER that is
    the number of fractions, while `raw_frames` keeps the number of detector frames.
    `pixel_size_angstrom` is None when the file does not record one.
    """

    path: Path
    file_format: str  # "mrc" | "tiff" | "eer"
    number_of_frames: int
    shape: tuple[int, int]  # (ny, nx)
    dtype: np.dtype
    pixel_size_angstrom: float | None
    raw_frames: int


def movie_format(path: str | os.PathLike[str]) -> str:
    """ "mrc", "tiff" or "eer" from the file name; anything else is an error."""
    suffix = Path(path).suffix.lower()
    if suffix in MRC_SUFFIXES:
        return "mrc"
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in EER_SUFFIXES:
        return "eer"
    raise MovieFormatError(f"{path}: unknown movie format {suffix!r} (expected MRC, TIFF or EER)")


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: movie file does not exist")
    if path.stat().st_size == 0:
        raise MovieFormatError(f"{path}: movie file is empty")


def movie_header(path: str | os.PathLike[str], *, eer_fractions: int = 40) -> MovieHeader:
    """Frame count, frame shape, dtype and header pixel size, without decoding pixels."""
    path = Path(path)
    _check_exists(path)
    kind = movie_format(path)
    if kind == "mrc":
        return _mrc_header(path)
    return _tiff_header(path, kind, eer_fractions)


def read_movie(path: str | os.PathLike[str], *, eer_fractions: int = 40) -> np.ndarray:
    """The movie as `(frames, ny, nx)` in its native dtype.

    MRC and uncompressed TIFF are memory-mapped; compressed TIFF is decoded into memory
    in its native (integer) dtype; EER is summed into `eer_fractions` uint16 frames
    (see `eer_fraction_ranges`).
    """
    path = Path(path)
    header = movie_header(path, eer_fractions=eer_fractions)
    if header.file_format == "mrc":
        return _read_mrc(path)
    if header.file_format == "eer":
        return _read_eer(path, eer_fractions)
    return _read_tiff(path)


# ---------------------------------------------------------------- MRC


def _open_mrc(path: Path) -> mrcfile.mrcfile.MrcFile:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # mrcfile warns (not raises) on some corruptions
            return mrcfile.mmap(path, mode="r", permissive=False)
    except (ValueError, OSError, RuntimeWarning) as error:
        raise MovieFormatError(f"{path}: corrupt or truncated MRC file ({error})") from error


def _mrc_header(path: Path) -> MovieHeader:
    with _open_mrc(path) as mrc:
        data = mrc.data
        if data is None or data.size == 0:
            raise MovieFormatError(f"{path}: MRC file holds no image data")
        frames = data if data.ndim == 3 else data[np.newaxis]
        voxel_x = float(mrc.voxel_size.x)
        return MovieHeader(
            path=path,
            file_format="mrc",
            number_of_frames=int(frames.shape[0]),
            shape=(int(frames.shape[1]), int(frames.shape[2])),
            dtype=np.dtype(frames.dtype),
            pixel_size_angstrom=voxel_x if voxel_x > 0 else None,
            raw_frames=int(frames.shape[0]),
        )


def _read_mrc(path: Path) -> np.ndarray:
    mrc = _open_mrc(path)
    # keep the mmap open: the returned array views it; it is closed when garbage-collected
    data = mrc.data
    return data if data.ndim == 3 else data[np.newaxis]


# ---------------------------------------------------------------- TIFF / EER


def _open_tiff(path: Path) -> tifffile.TiffFile:
    try:
        return tifffile.TiffFile(path)
    except (ValueError, OSError, IndexError, struct_error) as error:
        raise MovieFormatError(f"{path}: corrupt TIFF/EER file ({error})") from error


def _image_pages(tif: tifffile.TiffFile, kind: str) -> list:
    pages = list(tif.pages)
    if kind == "eer":
        # an EER file may start with an uncompressed integrated image; frames are the rest
        pages = [page for page in pages if page.compression in (65000, 65001, 65002)]
    return pages


def _check_not_truncated(path: Path, pages: list) -> None:
    size = path.stat().st_size
    for index, page in enumerate(pages):
        offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        counts = np.asarray(page.databytecounts, dtype=np.int64)
        if offsets.size and int((offsets + counts).max()) > size:
            raise MovieFormatError(
                f"{path}: truncated file: frame {index + 1} extends past the end of the file"
            )


def _tiff_header(path: Path, kind: str, eer_fractions: int) -> MovieHeader:
    with _open_tiff(path) as tif:
        try:
            pages = _image_pages(tif, kind)
        except (ValueError, OSError, IndexError, struct_error) as error:
            raise MovieFormatError(f"{path}: corrupt TIFF/EER structure ({error})") from error
        if not pages:
            raise MovieFormatError(f"{path}: no image frames found")
        _check_not_truncated(path, pages)
        first = pages[0]
        shape = (int(first.shape[0]), int(first.shape[1]))
        for index, page in enumerate(pages):
            if tuple(page.shape[:2]) != shape:
                raise MovieFormatError(
                    f"{path}: frame {index + 1} has shape {page.shape}, frame 1 has {shape}"
                )
        pixel_size = _eer_pixel_size_angstrom(tif) if kind == "eer" else None
        if kind == "eer":
            fraction_ranges = eer_fraction_ranges(len(pages), eer_fractions, path=path)
            number_of_frames, dtype = len(fraction_ranges), np.dtype(np.uint16)
        else:
            number_of_frames, dtype = len(pages), np.dtype(first.dtype)
        return MovieHeader(
            path=path,
            file_format=kind,
            number_of_frames=number_of_frames,
            shape=shape,
            dtype=dtype,
            pixel_size_angstrom=pixel_size,
            raw_frames=len(pages),
        )


def _eer_pixel_size_angstrom(tif: tifffile.TiffFile) -> float | None:
    # EER XML metadata records the calibrated pixel size in metres
    try:
        metadata = tif.eer_metadata or {}
    except Exception:  # noqa: BLE001 - metadata is optional; a bad block must not fail the read
        return None
    value = metadata.get("sensorPixelSize.width") if isinstance(metadata, dict) else None
    try:
        metres = float(value)
    except (TypeError, ValueError):
        return None
    return metres * 1e10 if metres > 0 else None


def _read_tiff(path: Path) -> np.ndarray:
    try:
        try:
            frames = tifffile.memmap(path, mode="r")
        except ValueError:  # compressed or non-contiguous: decode
            frames = tifffile.imread(path)
    except (ValueError, OSError, RuntimeError) as error:
        raise MovieFormatError(f"{path}: cannot decode TIFF ({error})") from error
    return frames if frames.ndim == 3 else frames[np.newaxis]


def eer_fraction_ranges(
    raw_frames: int, eer_fractions: int, *, path: str | os.PathLike[str] = "EER movie"
) -> list[tuple[int, int]]:
    """Half-open raw-frame ranges summed into each of `eer_fractions` output frames.

    Every fraction holds `raw_frames // eer_fractions` raw frames; the remaining
    `raw_frames % eer_fractions` frames at the end are dropped (as RELION does with
    its EER grouping), so every fraction carries the same dose.
    """
    if eer_fractions < 1:
        raise MovieError(f"{path}: eer_fractions must be >= 1, got {eer_fractions}")
    if raw_frames < eer_fractions:
        raise MovieError(
            f"{path}: {raw_frames} EER frames cannot be split into {eer_fractions} fractions"
        )
    group = raw_frames // eer_fractions
    return [(index * group, (index + 1) * group) for index in range(eer_fractions)]


def _read_eer(path: Path, eer_fractions: int) -> np.ndarray:
    with _open_tiff(path) as tif:
        pages = _image_pages(tif, "eer")
        ranges = eer_fraction_ranges(len(pages), eer_fractions, path=path)
        ny, nx = pages[0].shape[:2]
        fractions = np.zeros((len(ranges), ny, nx), dtype=np.uint16)
        for fraction, (start, stop) in enumerate(ranges):
            for index in range(start, stop):
                try:
                    fractions[fraction] += pages[index].asarray()
                except (ValueError, RuntimeError) as error:
                    raise MovieFormatError(
                        f"{path}: cannot decode EER frame {index + 1} ({error})"
                    ) from error
    return fractions
