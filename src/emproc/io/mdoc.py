"""SerialEM / Tomo tilt-series `.mdoc` metadata (parsed with `mdocfile`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import mdocfile
import numpy as np


class MdocError(ValueError):
    """The mdoc file is missing, unreadable or lacks what a tilt series needs."""


_TILT_AXIS_TITLE = re.compile(r"tilt\s*axis\s*angle\s*=\s*([-+0-9.eE]+)", re.IGNORECASE)
# an autodoc line is blank, a [section] or [T = title], `Key = value`, or a # comment;
# mdocfile silently skips anything else, which would lose e.g. a tilt's ExposureDose
_MDOC_LINE = re.compile(r"\s*(\[[^\]]*\]|[A-Za-z][^=\[\]]*=.*|#.*)?\s*")


@dataclass(frozen=True)
class TiltMetadata:
    """One exposure of a tilt series."""

    z_value: int  # section number in the mdoc (SerialEM writes them in acquisition order)
    acquisition_index: int  # 0-based position in the collection
    tilt_angle_deg: float
    exposure_dose_e_per_angstrom2: float
    prior_dose_e_per_angstrom2: float  # dose received before this exposure
    defocus_angstrom: float | None  # positive = underfocus (mdoc: microns, negative = under)
    sub_frame_path: Path | None  # file name only: the recorded path is on the scope PC
    date_time: str | None


@dataclass(frozen=True)
class TiltSeriesMetadata:
    name: str  # mdoc file name without .mdoc (and without a trailing .mrc/.st)
    mdoc_path: Path
    pixel_size_angstrom: float
    tilt_axis_angle_deg: float  # counter-clockwise from +Y in the raw image (IMOD convention)
    voltage_kv: float | None
    image_size_px: tuple[int, int] | None  # (x, y)
    tilts: tuple[TiltMetadata, ...]  # in acquisition order

    def movie_path(self, tilt: TiltMetadata, frames_dir: Path | None = None) -> Path | None:
        """Where the tilt's movie is expected: next to the mdoc unless `frames_dir` is given
        (SerialEM records the path on the acquisition PC, only its name is portable)."""
        if tilt.sub_frame_path is None:
            return None
        return (frames_dir or self.mdoc_path.parent) / tilt.sub_frame_path.name


@contextmanager
def _quiet_mdocfile() -> Iterator[None]:
    # mdocfile warns on every section for SerialEM's own key "FrameDosesAndNumber"
    logger = logging.getLogger("mdocfile")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tilt_axis_from_titles(titles: list[str]) -> float | None:
    for title in titles:
        match = _TILT_AXIS_TITLE.search(title)
        if match:
            return float(match.group(1).rstrip(","))
    return None


def _optional_float(value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def _check_lines(path: Path, text: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        if "\x00" in line or not _MDOC_LINE.fullmatch(line):
            raise MdocError(f"{path}: line {number} is malformed: {line.strip()[:80]!r}")


def _one_line(error: Exception) -> str:
    """pydantic's multi-line validation report as `field: problem (got 'value')`."""
    details = getattr(error, "errors", None)
    if callable(details):
        try:
            return "; ".join(
                f"{'.'.join(map(str, item['loc']))}: {item['msg']} (got {item.get('input')!r})"
                for item in details()
            )
        except Exception:  # noqa: BLE001 - fall back to the plain message
            pass
    return " ".join(str(error).split())


def read_tilt_series_mdoc(path: str | Path) -> TiltSeriesMetadata:
    """Parse a tilt-series mdoc. Tilts are returned in acquisition order, taken from
    DateTime when every section has one, else from the ZValue order."""
    path = Path(path)
    if not path.is_file():
        raise MdocError(f"{path}: mdoc file not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    _check_lines(path, text)
    try:
        with _quiet_mdocfile():
            mdoc = mdocfile.data_models.Mdoc.from_string(text)
    except Exception as error:  # mdocfile raises pydantic/parsing errors of many types
        raise MdocError(f"{path}: cannot parse mdoc: {_one_line(error)}") from error
    sections = mdoc.section_data
    if not sections:
        raise MdocError(f"{path}: no [ZValue = n] sections")
    global_data = mdoc.global_data
    pixel_size = _optional_float(global_data.PixelSpacing) or _optional_float(
        sections[0].PixelSpacing
    )
    if not pixel_size or pixel_size <= 0:
        raise MdocError(f"{path}: no PixelSpacing")
    axis = _tilt_axis_from_titles(list(mdoc.titles))
    if axis is None:
        axis = _optional_float(sections[0].RotationAngle)
    if axis is None:
        raise MdocError(f"{path}: no 'Tilt axis angle' title and no RotationAngle")
    for section in sections:
        if section.TiltAngle is None:
            raise MdocError(f"{path}: section ZValue = {section.ZValue} has no TiltAngle")
    order = list(range(len(sections)))
    times = [_parse_time(s.DateTime) for s in sections]
    if all(t is not None for t in times):
        order = sorted(order, key=lambda i: (times[i], i))
    tilts = []
    for acquisition_index, section_index in enumerate(order):
        section = sections[section_index]
        defocus_um = _optional_float(section.Defocus)
        frame_path = section.SubFramePath
        tilts.append(
            TiltMetadata(
                z_value=int(section.ZValue if section.ZValue is not None else section_index),
                acquisition_index=acquisition_index,
                tilt_angle_deg=float(section.TiltAngle),
                exposure_dose_e_per_angstrom2=_optional_float(section.ExposureDose) or 0.0,
                prior_dose_e_per_angstrom2=_optional_float(section.PriorRecordDose) or 0.0,
                defocus_angstrom=None if defocus_um is None else -defocus_um * 1e4,
                sub_frame_path=None
                if frame_path is None
                else Path(PureWindowsPath(str(frame_path)).name),
                date_time=section.DateTime,
            )
        )
    image_size = global_data.ImageSize
    name = path.name
    for suffix in (".mdoc", ".mrc", ".st", ".tif"):
        name = name.removesuffix(suffix)
    return TiltSeriesMetadata(
        name=name,
        mdoc_path=path.resolve(),
        pixel_size_angstrom=float(pixel_size),
        tilt_axis_angle_deg=float(axis),
        voltage_kv=_optional_float(global_data.Voltage),
        image_size_px=None if image_size is None else (int(image_size[0]), int(image_size[1])),
        tilts=tuple(tilts),
    )


def _parse_time(value: str | None):
    from datetime import datetime

    if not value:
        return None
    for pattern in ("%d-%b-%y  %H:%M:%S", "%d-%b-%y %H:%M:%S", "%d-%b-%Y  %H:%M:%S"):
        try:
            return datetime.strptime(value.strip(), pattern)
        except ValueError:
            continue
    return None
