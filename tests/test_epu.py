"""EPU MicroscopeImage XML and EPU file names (emproc.io.epu)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from emproc.io.epu import (
    EpuMetadataError,
    EpuNameError,
    epu_metadata_path,
    epu_movie_name,
    parse_epu_movie_name,
    read_epu_movie_xml,
    write_epu_movie_xml,
)

# Trimmed from the structure EPU 3.x writes for a Falcon 4i exposure (values invented).
REALISTIC_XML = """<?xml version="1.0" encoding="utf-8"?>
<MicroscopeImage xmlns="http://schemas.datacontract.org/2004/07/Fei.SharedObjects"
                 xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <name>Empty</name>
  <uniqueID>0d4c5e8a-0000-4000-8000-1234567890ab</uniqueID>
  <CustomData xmlns:a="http://schemas.microsoft.com/2003/10/Serialization/Arrays">
    <a:KeyValueOfstringanyType>
      <a:Key>DoseOnCamera</a:Key>
      <a:Value i:type="b:double" xmlns:b="http://www.w3.org/2001/XMLSchema">5.91</a:Value>
    </a:KeyValueOfstringanyType>
    <a:KeyValueOfstringanyType>
      <a:Key>Detectors[BM-Falcon].CommercialName</a:Key>
      <a:Value i:type="b:string" xmlns:b="http://www.w3.org/2001/XMLSchema">Falcon 4i</a:Value>
    </a:KeyValueOfstringanyType>
    <a:KeyValueOfstringanyType>
      <a:Key>Dose</a:Key>
      <a:Value i:type="b:double" xmlns:b="http://www.w3.org/2001/XMLSchema">4.0125E+21</a:Value>
    </a:KeyValueOfstringanyType>
    <a:KeyValueOfstringanyType>
      <a:Key>PhasePlateUsed</a:Key>
      <a:Value i:type="b:boolean" xmlns:b="http://www.w3.org/2001/XMLSchema">false</a:Value>
    </a:KeyValueOfstringanyType>
    <a:KeyValueOfstringanyType>
      <a:Key>AppliedDefocus</a:Key>
      <a:Value i:type="b:double" xmlns:b="http://www.w3.org/2001/XMLSchema">-1.4E-06</a:Value>
    </a:KeyValueOfstringanyType>
  </CustomData>
  <IntensityScale i:nil="true"/>
  <SpatialScale>
    <pixelSize>
      <x>
        <numericValue>7.27E-11</numericValue>
        <unit xmlns:a="http://schemas.datacontract.org/2004/07/Fei.Common.Types">
          <a:_x003C_Symbol_x003E_k__BackingField>m</a:_x003C_Symbol_x003E_k__BackingField>
        </unit>
      </x>
      <y><numericValue>7.27E-11</numericValue></y>
    </pixelSize>
  </SpatialScale>
  <microscopeData>
    <acquisition>
      <acquisitionDateTime>2024-03-07T22:41:05.6403358+00:00</acquisitionDateTime>
      <camera>
        <Binning xmlns:a="http://schemas.datacontract.org/2004/07/System.Drawing">
          <a:x>1</a:x><a:y>1</a:y>
        </Binning>
        <CameraSpecificInput xmlns:a="http://schemas.microsoft.com/2003/10/Serialization/Arrays">
          <a:KeyValueOfstringanyType>
            <a:Key>FractionationSettings</a:Key>
            <a:Value i:type="b:EquidistantFractionation"
                     xmlns:b="http://schemas.datacontract.org/2004/07/Fei.Applications.Common.Omp.Interface">
              <b:NumberOffractions>48</b:NumberOffractions>
            </a:Value>
          </a:KeyValueOfstringanyType>
        </CameraSpecificInput>
        <ExposureTime>4.41</ExposureTime>
        <Name>BM-Falcon</Name>
      </camera>
    </acquisition>
    <core><ApplicationSoftware>EPU</ApplicationSoftware></core>
    <gun><AccelerationVoltage>300000</AccelerationVoltage></gun>
    <optics>
      <Defocus>-1.2E-06</Defocus>
      <TemMagnification><NominalMagnification>165000</NominalMagnification></TemMagnification>
    </optics>
  </microscopeData>
</MicroscopeImage>
"""


def test_reads_realistic_epu_xml(tmp_path: Path) -> None:
    path = tmp_path / "FoilHole_1_Data_2_3_20240307_224105.xml"
    path.write_text(REALISTIC_XML)
    metadata = read_epu_movie_xml(path)
    assert metadata.pixel_size_angstrom == pytest.approx(0.727)
    assert metadata.voltage_kv == pytest.approx(300.0)
    assert metadata.dose_e_per_angstrom2 == pytest.approx(40.125)
    assert metadata.number_of_frames == 48
    assert metadata.dose_per_frame_e_per_angstrom2 == pytest.approx(40.125 / 48)
    assert metadata.nominal_defocus_angstrom == pytest.approx(14000.0)
    assert metadata.timestamp == datetime(2024, 3, 7, 22, 41, 5, 640335, tzinfo=UTC)
    assert metadata.detector == "Falcon 4i"
    assert metadata.camera_name == "BM-Falcon"
    assert metadata.exposure_time_s == pytest.approx(4.41)
    assert metadata.nominal_magnification == 165000


def test_round_trip(tmp_path: Path) -> None:
    stamp = datetime(2026, 11, 29, 9, 30, 12, tzinfo=timezone(timedelta(hours=1)))
    path = write_epu_movie_xml(
        tmp_path / "Data" / "FoilHole_9_Data_8_7_20261129_093012.xml",
        pixel_size_angstrom=0.834,
        voltage_kv=200.0,
        dose_e_per_angstrom2=52.5,
        number_of_frames=40,
        nominal_defocus_angstrom=17500.0,
        timestamp=stamp,
        detector="Gatan K3 <test & co>",
        exposure_time_s=2.5,
    )
    metadata = read_epu_movie_xml(path)
    assert metadata.pixel_size_angstrom == pytest.approx(0.834, rel=1e-12)
    assert metadata.voltage_kv == 200.0
    assert metadata.dose_e_per_angstrom2 == pytest.approx(52.5, rel=1e-12)
    assert metadata.number_of_frames == 40
    assert metadata.nominal_defocus_angstrom == pytest.approx(17500.0, rel=1e-12)
    assert metadata.timestamp == stamp
    assert metadata.detector == "Gatan K3 <test & co>"
    assert metadata.exposure_time_s == 2.5
    assert not list(tmp_path.rglob(".*"))  # atomic write left no temporary behind


def test_missing_optional_fields_are_none(tmp_path: Path) -> None:
    text = REALISTIC_XML
    for start, end in [("<CustomData", "</CustomData>"), ("<acquisition>", "</acquisition>")]:
        text = text[: text.index(start)] + text[text.index(end) + len(end) :]
    path = tmp_path / "minimal.xml"
    path.write_text(text)
    metadata = read_epu_movie_xml(path)
    assert metadata.pixel_size_angstrom == pytest.approx(0.727)
    assert metadata.dose_e_per_angstrom2 is None
    assert metadata.number_of_frames is None
    assert metadata.nominal_defocus_angstrom is None
    assert metadata.timestamp is None
    assert metadata.detector is None
    assert metadata.dose_per_frame_e_per_angstrom2 is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (REALISTIC_XML[:900], "malformed"),
        ("<Atlas/>", "not MicroscopeImage"),
        (REALISTIC_XML.replace("7.27E-11", "seven"), "pixel size is not a number"),
        (
            REALISTIC_XML.replace("<AccelerationVoltage>300000</AccelerationVoltage>", ""),
            "Acceleration",
        ),
        (REALISTIC_XML.replace("2024-03-07T22", "yesterday T22"), "ISO 8601"),
    ],
)
def test_bad_xml_names_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broken.xml"
    path.write_text(text)
    with pytest.raises(EpuMetadataError, match=message) as error:
        read_epu_movie_xml(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.xml"):
        read_epu_movie_xml(tmp_path / "nothere.xml")


def test_parse_movie_name_from_path() -> None:
    name = parse_epu_movie_name(
        "/data/bi1/Images-Disc1/GridSquare_8999138/Data/"
        "FoilHole_9015883_Data_9017347_6_20250108_154915_fractions.tiff"
    )
    assert (name.grid_square, name.foil_hole, name.template_id, name.acquisition_id) == (
        8999138,
        9015883,
        9017347,
        6,
    )
    assert name.timestamp == datetime(2025, 1, 8, 15, 49, 15)
    assert name.stem == "FoilHole_9015883_Data_9017347_6_20250108_154915"


@pytest.mark.parametrize(
    "file_name",
    [
        "FoilHole_1_Data_2_3_20180530_022100_Fractions.mrc",
        "FoilHole_1_Data_2_3_20180530_022100_EER.eer",
        "FoilHole_1_Data_2_3_20180530_022100.xml",
    ],
)
def test_parse_movie_name_variants(file_name: str) -> None:
    name = parse_epu_movie_name(file_name)
    assert name.grid_square is None
    assert name.stem == "FoilHole_1_Data_2_3_20180530_022100"
    assert epu_metadata_path(Path("/x") / file_name) == Path(
        "/x/FoilHole_1_Data_2_3_20180530_022100.xml"
    )


@pytest.mark.parametrize(
    "file_name",
    ["FoilHole1_Data_2_3_20180530_022100.mrc", "FoilHole_1_Data_2_3_20181330_022100.mrc", "a.tiff"],
)
def test_parse_movie_name_rejects(file_name: str) -> None:
    with pytest.raises(EpuNameError, match=file_name.split(".")[0]):
        parse_epu_movie_name(file_name)


def test_movie_name_builder_parses_back() -> None:
    stamp = datetime(2026, 11, 29, 23, 59, 58)
    movie = epu_movie_name(11, 22, 33, stamp, "tiff")
    assert movie == "FoilHole_11_Data_22_33_20261129_235958_fractions.tiff"
    parsed = parse_epu_movie_name(movie)
    assert (parsed.foil_hole, parsed.template_id, parsed.acquisition_id, parsed.timestamp) == (
        11,
        22,
        33,
        stamp,
    )
