"""Movie, gain and defect-map I/O: formats, orientation conventions and bad input."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest
import tifffile

from emproc.io.gain import (
    DefectRepair,
    GainError,
    load_defect_map,
    load_gain_reference,
    orient_to_movie,
)
from emproc.io.movie import (
    MovieError,
    MovieFormatError,
    eer_fraction_ranges,
    movie_header,
    read_movie,
)


@pytest.fixture
def counts() -> np.ndarray:
    return np.random.default_rng(0).poisson(3.0, size=(5, 40, 56)).astype(np.uint16)


def write_mrc(path, data, voxel_size=None):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        if voxel_size is not None:
            mrc.voxel_size = voxel_size


# ---------------------------------------------------------------- movies


def test_mrc_movie_is_memory_mapped_with_header_pixel_size(tmp_path, counts):
    path = tmp_path / "movie.mrc"
    write_mrc(path, counts, voxel_size=0.83)
    header = movie_header(path)
    assert header.file_format == "mrc"
    assert header.number_of_frames == 5 and header.shape == (40, 56)
    assert header.dtype == np.uint16
    assert header.pixel_size_angstrom == pytest.approx(0.83, rel=1e-6)
    frames = read_movie(path)
    assert isinstance(frames, np.memmap) or isinstance(frames.base, np.memmap)
    np.testing.assert_array_equal(frames, counts)


def test_mrc_without_pixel_size_reports_none(tmp_path, counts):
    path = tmp_path / "movie.mrcs"
    write_mrc(path, counts[0])  # single frame, 2D
    header = movie_header(path)
    assert header.pixel_size_angstrom is None
    assert read_movie(path).shape == (1, 40, 56)


@pytest.mark.parametrize("compression", [None, "lzw", "zlib"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_movie_round_trip(tmp_path, counts, compression, dtype):
    path = tmp_path / "movie.tiff"
    data = counts.astype(dtype)
    tifffile.imwrite(path, data, compression=compression)
    header = movie_header(path)
    assert (header.number_of_frames, header.shape, header.dtype) == (5, (40, 56), np.dtype(dtype))
    frames = read_movie(path)
    assert frames.dtype == dtype
    np.testing.assert_array_equal(frames, data)


def _eer_encode_frame(events: np.ndarray) -> bytes:
    """EER bit stream (compression 65001: 7-bit runs, 2+2 sub-pixel bits, LSB first)."""
    bits: list[int] = []

    def put(value: int, width: int) -> None:
        bits.extend((value >> i) & 1 for i in range(width))

    position = 0
    for index in np.flatnonzero(events.ravel()):
        gap = int(index) - position
        while gap >= 127:  # an all-ones run continues without an event
            put(127, 7)
            gap -= 127
        put(gap, 7)
        put(0, 4)
        position = int(index) + 1
    remaining = events.size - position
    while remaining >= 127:
        put(127, 7)
        remaining -= 127
    put(remaining, 7)  # a run ending exactly on the last pixel ends the frame
    bits.extend([0] * (32 + (-len(bits)) % 16))
    return np.packbits(np.array(bits, dtype=np.uint8), bitorder="little").tobytes()


def write_eer(path, events: np.ndarray, pixel_size_m: float | None = None) -> None:
    """A BigTIFF laid out like a Falcon EER file (tifffile cannot encode EER itself:
    strips are written pre-encoded and the Compression tag is set to 65001 after)."""
    ny, nx = events.shape[1:]
    item = (
        f'<item name="sensorPixelSize.width" unit="m">{pixel_size_m}</item>' if pixel_size_m else ""
    )
    metadata = f"<metadata>{item}</metadata>".encode()
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        for index, frame in enumerate(events):
            strip = _eer_encode_frame(frame)
            writer.write(
                iter([(strip, len(strip))]),
                shape=(ny, nx),
                dtype=np.uint8,
                photometric="minisblack",
                rowsperstrip=ny,
                compression="zlib",
                extratags=[(65001, 7, len(metadata), metadata, True)] if index == 0 else None,
            )
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for page in tif.pages:
            page.tags["Compression"].overwrite(65001)


def test_eer_movie_is_fractionated(tmp_path):
    events = (np.random.default_rng(1).random((10, 32, 48)) < 0.05).astype(np.uint8)
    path = tmp_path / "movie.eer"
    write_eer(path, events, pixel_size_m=0.83e-10)
    header = movie_header(path, eer_fractions=3)
    assert header.file_format == "eer" and header.raw_frames == 10
    assert header.number_of_frames == 3 and header.shape == (32, 48)
    assert header.pixel_size_angstrom == pytest.approx(0.83)
    frames = read_movie(path, eer_fractions=3)
    assert frames.dtype == np.uint16 and frames.shape == (3, 32, 48)
    expected = events[:9].reshape(3, 3, 32, 48).sum(axis=1)  # raw frame 10 dropped
    np.testing.assert_array_equal(frames, expected)


def test_eer_fraction_ranges():
    assert eer_fraction_ranges(10, 3) == [(0, 3), (3, 6), (6, 9)]
    assert eer_fraction_ranges(400, 40)[-1] == (390, 400)
    with pytest.raises(MovieError, match="cannot be split"):
        eer_fraction_ranges(5, 6, path="x.eer")


def test_missing_and_empty_and_unknown_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.mrc"):
        read_movie(tmp_path / "nothere.mrc")
    empty = tmp_path / "empty.tiff"
    empty.write_bytes(b"")
    with pytest.raises(MovieFormatError, match="empty.tiff.*empty"):
        movie_header(empty)
    odd = tmp_path / "movie.dm4"
    odd.write_bytes(b"1234")
    with pytest.raises(MovieFormatError, match="movie.dm4"):
        movie_header(odd)


def test_truncated_mrc_is_rejected(tmp_path, counts):
    path = tmp_path / "cut.mrc"
    write_mrc(path, counts)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(MovieFormatError, match="cut.mrc"):
        read_movie(path)


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("cut", ["end", "middle"])
def test_truncated_tiff_is_rejected(tmp_path, counts, compression, cut):
    path = tmp_path / "cut.tiff"
    tifffile.imwrite(path, counts, compression=compression)
    data = path.read_bytes()
    if cut == "end":  # an interrupted copy: the last frame's data is missing
        path.write_bytes(data[:-50])
    else:  # bytes lost mid-file: later IFD offsets point to garbage
        path.write_bytes(data[: len(data) // 2] + data[len(data) // 2 + 64 :])
    with pytest.raises(MovieFormatError, match="cut.tiff"):
        read_movie(path)


def test_garbage_file_is_rejected(tmp_path):
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"not a tiff at all" * 10)
    with pytest.raises(MovieFormatError, match="garbage.tif"):
        read_movie(path)


# ---------------------------------------------------------------- gain and defects


def test_gain_orientation_matches_motioncor2_convention():
    gain = np.arange(6, dtype=np.float32).reshape(2, 3)  # [[0 1 2], [3 4 5]]
    # 90 deg counter-clockwise with y up (= clockwise as displayed with row 0 on top):
    # the right column (2, 5) becomes the bottom row read right-to-left in y-up terms
    np.testing.assert_array_equal(orient_to_movie(gain, 90), [[3, 0], [4, 1], [5, 2]])
    np.testing.assert_array_equal(orient_to_movie(gain, 180), gain[::-1, ::-1])
    np.testing.assert_array_equal(orient_to_movie(gain, 270), np.rot90(gain, 1))
    np.testing.assert_array_equal(orient_to_movie(gain, 0, "x"), gain[:, ::-1])
    np.testing.assert_array_equal(orient_to_movie(gain, 0, "y"), gain[::-1, :])
    # rotation is applied before the flip
    np.testing.assert_array_equal(orient_to_movie(gain, 90, "x"), np.rot90(gain, -1)[:, ::-1])


@pytest.mark.parametrize("suffix", [".mrc", ".tiff"])
@pytest.mark.parametrize("rotation,flip", [(0, "none"), (90, "x"), (270, "y"), (180, "none")])
def test_load_gain_reference_orients_to_movie(tmp_path, suffix, rotation, flip):
    movie_gain = np.random.default_rng(2).uniform(0.8, 1.2, (40, 56)).astype(np.float32)
    # the file holds the gain in detector orientation: undo flip, then rotation
    unflipped = (
        movie_gain[:, ::-1] if flip == "x" else movie_gain[::-1] if flip == "y" else movie_gain
    )
    on_disk = np.ascontiguousarray(np.rot90(unflipped, k=rotation // 90))
    path = tmp_path / f"gain{suffix}"
    if suffix == ".mrc":
        write_mrc(path, on_disk)
    else:
        tifffile.imwrite(path, on_disk)
    gain = load_gain_reference(path, rotation_deg=rotation, flip=flip, expected_shape=(40, 56))
    assert gain.dtype == np.float32
    np.testing.assert_array_equal(gain, movie_gain)


def test_gain_of_wrong_size_names_the_file(tmp_path):
    path = tmp_path / "gain.mrc"
    write_mrc(path, np.ones((40, 50), dtype=np.float32))
    with pytest.raises(GainError, match=r"gain.mrc.*\(40, 50\).*\(40, 56\)"):
        load_gain_reference(path, expected_shape=(40, 56))


def test_gain_with_nan_is_rejected(tmp_path):
    path = tmp_path / "gain.mrc"
    gain = np.ones((8, 8), dtype=np.float32)
    gain[3, 3] = np.nan
    with pytest.warns(RuntimeWarning):  # mrcfile warns on writing NaN
        write_mrc(path, gain)
    with pytest.raises(GainError, match="gain.mrc.*NaN"):
        load_gain_reference(path)


def test_defect_map_and_repair(tmp_path):
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[5, 7] = 1
    mask[:, 20] = 1  # a dead column
    path = tmp_path / "defects.tiff"
    tifffile.imwrite(path, mask)
    defects = load_defect_map(path, expected_shape=(20, 30))
    assert defects.dtype == bool and defects.sum() == 21
    # a smooth ramp: the neighbour mean reproduces it exactly away from the edges
    y, x = np.mgrid[0:20, 0:30].astype(np.float32)
    truth = 3.0 * x + 2.0 * y
    frame = truth.copy()
    frame[defects] = 1e6
    DefectRepair(defects)(frame)
    np.testing.assert_allclose(frame[2:-2], truth[2:-2], atol=1e-3)
    assert np.abs(frame - truth).max() < 10.0
