"""EPU per-movie metadata: the `MicroscopeImage` XML next to each movie, and EPU file names.

EPU (Thermo Fisher) writes, for every exposure,
`Images-Disc1/GridSquare_<gs>/Data/FoilHole_<fh>_Data_<tpl>_<acq>_<YYYYMMDD>_<HHMMSS>_fractions.tiff`
and next to it the same stem without `_fractions` plus `.xml`: a .NET DataContract document
(namespace Fei.SharedObjects). SI units in the file are converted here:

| XML                                           | file unit      | here                         |
|-----------------------------------------------|----------------|------------------------------|
| SpatialScale/pixelSize/x/numericValue         | m              | pixel_size_angstrom          |
| microscopeData/gun/AccelerationVoltage        | V              | voltage_kv                   |
| CustomData "Dose" (whole exposure)            | e-/m^2         | dose_e_per_angstrom2         |
| CustomData "AppliedDefocus" (negative=under)  | m              | nominal_defocus_angstrom (+) |
| acquisition/acquisitionDateTime               | ISO 8601       | timestamp (datetime)         |
| FractionationSettings/NumberOffractions       | -              | number_of_frames             |
| camera/ExposureTime                           | s              | exposure_time_s              |
"""

from __future__ import annotations

import os
import re
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

from emproc.io.atomic import write_text_atomic


class EpuMetadataError(ValueError):
    """An EPU XML file is malformed or lacks a required field; the message names the file."""


class EpuNameError(ValueError):
    """A file name does not follow EPU's FoilHole_..._Data_... pattern."""


@dataclass(frozen=True)
class EpuMovieMetadata:
    """Acquisition settings of one EPU exposure (Angstrom, kV, e-/A^2, seconds)."""

    path: Path
    pixel_size_angstrom: float
    voltage_kv: float
    dose_e_per_angstrom2: float | None  # total over the exposure
    number_of_frames: int | None
    nominal_defocus_angstrom: float | None  # positive = underfocus
    timestamp: datetime | None
    detector: str | None  # commercial name, e.g. "BioQuantum K3"; else the camera name
    exposure_time_s: float | None = None
    nominal_magnification: int | None = None
    camera_name: str | None = None  # EPU's camera id, e.g. "EF-CCD", "BM-Falcon"

    @property
    def dose_per_frame_e_per_angstrom2(self) -> float | None:
        if self.dose_e_per_angstrom2 is None or not self.number_of_frames:
            return None
        return self.dose_e_per_angstrom2 / self.number_of_frames


@dataclass(frozen=True)
class EpuMovieName:
    """What an EPU movie (or metadata) file name and its folders say."""

    grid_square: int | None  # from the GridSquare_<n> folder, None if absent
    foil_hole: int
    template_id: int  # the acquisition-area template ("Data_<id>")
    acquisition_id: int
    timestamp: datetime
    stem: str  # name without `_fractions`/`_EER` and extension: the metadata stem


_MOVIE_NAME = re.compile(
    r"^FoilHole_(?P<foil_hole>\d+)_Data_(?P<template>\d+)_(?P<acquisition>\d+)_"
    r"(?P<date>\d{8})_(?P<time>\d{6})(?P<suffix>_fractions|_Fractions|_EER)?"
    r"\.(?P<extension>[A-Za-z0-9]+)$"
)
_GRID_SQUARE = re.compile(r"^GridSquare_(\d+)$")


def parse_epu_movie_name(name: str | os.PathLike[str]) -> EpuMovieName:
    """Grid square, foil hole, ids and timestamp from an EPU movie/XML path or file name."""
    path = Path(name)
    match = _MOVIE_NAME.match(path.name)
    if match is None:
        raise EpuNameError(
            f"{path}: not an EPU movie name "
            "(FoilHole_<id>_Data_<id>_<id>_<YYYYMMDD>_<HHMMSS>[_fractions].<ext>)"
        )
    try:
        timestamp = datetime.strptime(match["date"] + match["time"], "%Y%m%d%H%M%S")
    except ValueError as error:
        raise EpuNameError(f"{path}: invalid date/time in EPU name ({error})") from error
    grid_square = None
    for part in reversed(path.parent.parts):
        square = _GRID_SQUARE.match(part)
        if square:
            grid_square = int(square.group(1))
            break
    stem = path.name[: match.start("suffix")] if match["suffix"] else path.stem
    return EpuMovieName(
        grid_square=grid_square,
        foil_hole=int(match["foil_hole"]),
        template_id=int(match["template"]),
        acquisition_id=int(match["acquisition"]),
        timestamp=timestamp,
        stem=stem,
    )


def epu_metadata_path(movie_path: str | os.PathLike[str]) -> Path:
    """The EPU XML that belongs to a movie: same folder, stem without `_fractions`."""
    movie_path = Path(movie_path)
    return movie_path.with_name(parse_epu_movie_name(movie_path).stem + ".xml")


def epu_movie_name(
    foil_hole: int,
    template_id: int,
    acquisition_id: int,
    timestamp: datetime,
    extension: str = "tiff",
    fractions: bool = True,
) -> str:
    """`FoilHole_<fh>_Data_<tpl>_<acq>_<YYYYMMDD>_<HHMMSS>[_fractions].<extension>`."""
    stem = (
        f"FoilHole_{foil_hole}_Data_{template_id}_{acquisition_id}_"
        f"{timestamp:%Y%m%d}_{timestamp:%H%M%S}"
    )
    return f"{stem}_fractions.{extension}" if fractions else f"{stem}.{extension}"


# ---------------------------------------------------------------- writing

_XSD = "http://www.w3.org/2001/XMLSchema"
_ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
_UNIT = "http://schemas.datacontract.org/2004/07/Fei.Common.Types"
_OMP = "http://schemas.datacontract.org/2004/07/Fei.Applications.Common.Omp.Interface"


def _key_value(key: str, value: object, xsd_type: str, indent: str) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return (
        f"{indent}<a:KeyValueOfstringanyType>\n"
        f"{indent}  <a:Key>{escape(key)}</a:Key>\n"
        f'{indent}  <a:Value i:type="b:{xsd_type}" xmlns:b="{_XSD}">{escape(text)}</a:Value>\n'
        f"{indent}</a:KeyValueOfstringanyType>\n"
    )


def _length(value_m: float, indent: str) -> str:
    return (
        f"{indent}<numericValue>{value_m!r}</numericValue>\n"
        f'{indent}<unit xmlns:a="{_UNIT}">\n'
        f"{indent}  <a:_x003C_PrefixExponent_x003E_k__BackingField>1"
        f"</a:_x003C_PrefixExponent_x003E_k__BackingField>\n"
        f"{indent}  <a:_x003C_Symbol_x003E_k__BackingField>m"
        f"</a:_x003C_Symbol_x003E_k__BackingField>\n"
        f"{indent}</unit>\n"
    )


def write_epu_movie_xml(
    path: str | os.PathLike[str],
    *,
    pixel_size_angstrom: float,
    voltage_kv: float,
    dose_e_per_angstrom2: float,
    number_of_frames: int,
    nominal_defocus_angstrom: float,
    timestamp: datetime,
    detector: str = "BioQuantum K3",
    camera_name: str = "EF-CCD",
    exposure_time_s: float | None = None,
    nominal_magnification: int = 105000,
    stage_position_m: tuple[float, float, float] = (0.0, 0.0, 0.0),
    unique_id: str | None = None,
) -> Path:
    """Write an EPU `MicroscopeImage` XML (structure and SI units as EPU 3.x writes them)."""
    path = Path(path)
    if exposure_time_s is None:
        exposure_time_s = 0.05 * number_of_frames
    unique_id = unique_id or str(uuid.uuid5(uuid.NAMESPACE_URL, path.name))
    dose_rate = dose_e_per_angstrom2 / exposure_time_s  # e-/A^2/s at the specimen
    pixel_m = pixel_size_angstrom * 1e-10
    custom = "".join(
        [
            _key_value("DoseOnCamera", dose_rate * pixel_size_angstrom**2, "double", "    "),
            _key_value("Aperture[C2].Name", "50", "string", "    "),
            _key_value("Aperture[OBJ].Name", "100", "string", "    "),
            _key_value(f"Detectors[{camera_name}].CommercialName", detector, "string", "    "),
            _key_value(f"Detectors[{camera_name}].ElectronCounted", True, "boolean", "    "),
            _key_value("DoseRate", dose_rate, "double", "    "),
            _key_value("Dose", dose_e_per_angstrom2 * 1e20, "double", "    "),
            _key_value("PhasePlateUsed", False, "boolean", "    "),
            _key_value("BinaryResult.Detector", camera_name, "string", "    "),
            _key_value("DetectorCommercialName", detector, "string", "    "),
            _key_value("AppliedDefocus", -nominal_defocus_angstrom * 1e-10, "double", "    "),
        ]
    )
    camera_input = "".join(
        [
            _key_value("SuperResolutionFactor", 1, "long", "          "),
            "          <a:KeyValueOfstringanyType>\n"
            "            <a:Key>FractionationSettings</a:Key>\n"
            f'            <a:Value i:type="b:EquidistantFractionation" xmlns:b="{_OMP}">\n'
            f"              <b:NumberOffractions>{int(number_of_frames)}</b:NumberOffractions>\n"
            "            </a:Value>\n"
            "          </a:KeyValueOfstringanyType>\n",
            _key_value("ElectronCountingEnabled", True, "boolean", "          "),
        ]
    )
    x_m, y_m, z_m = stage_position_m
    text = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<MicroscopeImage xmlns="http://schemas.datacontract.org/2004/07/Fei.SharedObjects" '
        'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"  <name>{escape(path.stem)}</name>\n"
        f"  <uniqueID>{unique_id}</uniqueID>\n"
        f'  <CustomData xmlns:a="{_ARRAYS}">\n{custom}  </CustomData>\n'
        '  <IntensityScale i:nil="true"/>\n'
        "  <SpatialScale>\n    <pixelSize>\n"
        f"      <x>\n{_length(pixel_m, '        ')}      </x>\n"
        f"      <y>\n{_length(pixel_m, '        ')}      </y>\n"
        "    </pixelSize>\n  </SpatialScale>\n"
        "  <microscopeData>\n    <acquisition>\n"
        f"      <acquisitionDateTime>{timestamp.isoformat()}</acquisitionDateTime>\n"
        "      <camera>\n"
        f'        <CameraSpecificInput xmlns:a="{_ARRAYS}">\n{camera_input}'
        "        </CameraSpecificInput>\n"
        f"        <ExposureTime>{exposure_time_s!r}</ExposureTime>\n"
        f"        <Name>{escape(camera_name)}</Name>\n"
        "      </camera>\n    </acquisition>\n"
        "    <core>\n      <ApplicationSoftware>EPU</ApplicationSoftware>\n"
        "      <ApplicationSoftwareVersion>3.9.1.8206</ApplicationSoftwareVersion>\n"
        "    </core>\n"
        f"    <gun>\n      <AccelerationVoltage>{round(voltage_kv * 1000)}</AccelerationVoltage>\n"
        "    </gun>\n"
        "    <optics>\n"
        f"      <Defocus>{-nominal_defocus_angstrom * 1e-10!r}</Defocus>\n"
        "      <TemMagnification>\n"
        f"        <NominalMagnification>{int(nominal_magnification)}</NominalMagnification>\n"
        "      </TemMagnification>\n"
        "    </optics>\n"
        "    <stage>\n      <Position>\n        <A>0</A>\n        <B>0</B>\n"
        f"        <X>{x_m!r}</X>\n        <Y>{y_m!r}</Y>\n        <Z>{z_m!r}</Z>\n"
        "      </Position>\n    </stage>\n"
        "  </microscopeData>\n"
        "</MicroscopeImage>\n"
    )
    write_text_atomic(path, text)
    return path


# ---------------------------------------------------------------- reading


def _custom_data(root: ElementTree.Element) -> dict[str, str]:
    values: dict[str, str] = {}
    custom = root.find("{*}CustomData")
    if custom is None:
        return values
    for entry in custom.findall("{*}KeyValueOfstringanyType"):
        key = entry.find("{*}Key")
        value = entry.find("{*}Value")
        if key is not None and key.text and value is not None and value.text is not None:
            values[key.text.strip()] = value.text.strip()
    return values


def _text(root: ElementTree.Element, path: str) -> str | None:
    element = root.find(path)
    if element is None or element.text is None or not element.text.strip():
        return None
    return element.text.strip()


def _number(path: Path, field: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError as error:
        raise EpuMetadataError(f"{path}: {field} is not a number: {text!r}") from error


def read_epu_movie_xml(path: str | os.PathLike[str]) -> EpuMovieMetadata:
    """Parse an EPU `MicroscopeImage` XML; missing optional fields come back as None.

    Raises FileNotFoundError for a missing file and EpuMetadataError for malformed XML, a
    different root element, or a missing/invalid pixel size or acceleration voltage.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: EPU metadata file does not exist")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as error:
        raise EpuMetadataError(f"{path}: malformed EPU XML ({error})") from error
    if root.tag.rsplit("}", 1)[-1] != "MicroscopeImage":
        raise EpuMetadataError(f"{path}: root element is {root.tag!r}, not MicroscopeImage")
    custom = _custom_data(root)

    pixel_m = _number(
        path, "pixel size", _text(root, "{*}SpatialScale/{*}pixelSize/{*}x/{*}numericValue")
    )
    voltage_v = _number(
        path, "AccelerationVoltage", _text(root, "{*}microscopeData/{*}gun/{*}AccelerationVoltage")
    )
    if pixel_m is None or pixel_m <= 0:
        raise EpuMetadataError(f"{path}: no valid SpatialScale/pixelSize in EPU XML")
    if voltage_v is None or voltage_v <= 0:
        raise EpuMetadataError(f"{path}: no valid microscopeData/gun/AccelerationVoltage")

    dose = _number(path, "Dose", custom.get("Dose"))
    defocus_m = _number(path, "AppliedDefocus", custom.get("AppliedDefocus"))
    fractions = _number(path, "NumberOffractions", _text(root, ".//{*}NumberOffractions"))
    exposure = _number(
        path,
        "ExposureTime",
        _text(root, "{*}microscopeData/{*}acquisition/{*}camera/{*}ExposureTime"),
    )
    magnification = _number(
        path, "NominalMagnification", _text(root, ".//{*}TemMagnification/{*}NominalMagnification")
    )
    camera = _text(root, "{*}microscopeData/{*}acquisition/{*}camera/{*}Name")
    detector = custom.get("DetectorCommercialName")
    if detector is None:
        detector = next(
            (
                v
                for k, v in custom.items()
                if k.startswith("Detectors[") and k.endswith("].CommercialName")
            ),
            camera,
        )
    stamp_text = _text(root, "{*}microscopeData/{*}acquisition/{*}acquisitionDateTime")
    timestamp = None
    if stamp_text is not None:
        try:
            timestamp = datetime.fromisoformat(stamp_text)
        except ValueError as error:
            raise EpuMetadataError(
                f"{path}: acquisitionDateTime {stamp_text!r} is not ISO 8601"
            ) from error

    return EpuMovieMetadata(
        path=path,
        pixel_size_angstrom=pixel_m * 1e10,
        voltage_kv=voltage_v / 1000.0,
        dose_e_per_angstrom2=None if dose is None else dose * 1e-20,
        number_of_frames=None if fractions is None else int(fractions),
        nominal_defocus_angstrom=None if defocus_m is None else -defocus_m * 1e10,
        timestamp=timestamp,
        detector=detector,
        exposure_time_s=exposure,
        nominal_magnification=None if magnification is None else int(magnification),
        camera_name=camera,
    )
