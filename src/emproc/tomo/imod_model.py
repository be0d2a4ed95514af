"""IMOD binary model files (`.fid`, `.mod`): one object of open contours, e.g. the fiducial
model of a tilt series, one contour per bead with a point (x, y, section) per tilt.

Layout (IMOD's binary model format, big-endian): "IMOD" "V1.2", the 232-byte model
header, per object "OBJT" + 176 bytes, per contour "CONT" + (points, flags, time, surface)
+ float triples, then "IEOF". Coordinates are pixels of the stack (pixel index i at i).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from emproc.io.atomic import atomic_path

_OBJECT_OPEN_CONTOURS = 1 << 3  # IMOD_OBJFLAG_OPEN


def imod_model_bytes(
    contours: list[np.ndarray], image_shape_xyz: tuple[int, int, int], name: str = "emproc"
) -> bytes:
    """Model bytes for `contours`, each an [n, 3] array of (x, y, section) points."""
    nx, ny, nz = image_shape_xyz
    header = struct.pack(
        ">128s3i2I4i3f3f3i2if2i3f",
        name.encode()[:127],
        nx,
        ny,
        nz,
        1,  # objects
        0,  # model flags
        1,  # draw mode
        1,  # mouse mode
        0,  # black level
        255,  # white level
        0.0,
        0.0,
        0.0,
        1.0,
        1.0,
        1.0,
        0,
        0,
        0,
        0,
        128,
        1.0,  # pixel size
        0,  # units: pixels
        0,  # checksum
        0.0,
        0.0,
        0.0,
    )
    obj = struct.pack(
        ">64s64s4i3fi8B2i",
        b"fiducials",
        b"",
        len(contours),
        _OBJECT_OPEN_CONTOURS,
        0,
        1,
        0.0,
        1.0,
        0.0,
        0,
        1,  # symbol: circle
        3,  # symbol size
        1,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
    )
    parts = [b"IMODV1.2", header, b"OBJT", obj]
    for points in contours:
        points = np.asarray(points, dtype=">f4").reshape(-1, 3)
        parts += [b"CONT", struct.pack(">i3I", len(points), 0, 0, 0), points.tobytes()]
    parts.append(b"IEOF")
    return b"".join(parts)


def write_fiducial_model(
    path: str | Path,
    observed_px: np.ndarray,
    used: np.ndarray,
    image_shape_yx: tuple[int, int],
) -> None:
    """`.fid`: one contour per bead kept by the fit, its used observations as points
    (x, y) in stack pixels and z = section (tilt index in stack order)."""
    ny, nx = image_shape_yx
    contours = []
    for track, keep in zip(observed_px, used, strict=True):
        sections = np.nonzero(keep)[0]
        if len(sections) == 0:
            continue
        xy = track[sections] + np.array([nx / 2, ny / 2])
        contours.append(np.column_stack([xy, sections.astype(float)]))
    data = imod_model_bytes(contours, (nx, ny, observed_px.shape[1]))
    with atomic_path(path) as temporary:
        Path(temporary).write_bytes(data)
