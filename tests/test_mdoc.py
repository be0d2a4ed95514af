"""Tilt-series mdoc parsing."""

import pytest

from emproc.io.mdoc import MdocError, read_tilt_series_mdoc

MDOC = """PixelSpacing = 2.125
Voltage = 300
ImageFile = TS_03.mrc
ImageSize = 4096 4096
DataMode = 1

[T = SerialEM: Digitized on Krios                  29-Nov-26  10:00:00    ]

[T =     Tilt axis angle = -95.3, binning = 1  spot = 8  camera = 0]

[ZValue = 0]
TiltAngle = 0.0012
ExposureDose = 3.1
PixelSpacing = 2.125
Defocus = -3.52
SubFramePath = D:\\SerialEMData\\frames\\TS_03_001_0.0.tif
DateTime = 29-Nov-26  10:00:10

[ZValue = 1]
TiltAngle = 2.9987
ExposureDose = 3.1
PixelSpacing = 2.125
Defocus = -3.61
SubFramePath = D:\\SerialEMData\\frames\\TS_03_002_3.0.tif
DateTime = 29-Nov-26  10:00:40

[ZValue = 2]
TiltAngle = -3.0021
ExposureDose = 3.1
PixelSpacing = 2.125
SubFramePath = D:\\SerialEMData\\frames\\TS_03_003_-3.0.tif
DateTime = 29-Nov-26  10:00:25
"""


def test_reads_serialem_tilt_series(tmp_path):
    path = tmp_path / "TS_03.mrc.mdoc"
    path.write_text(MDOC)
    metadata = read_tilt_series_mdoc(path)
    assert metadata.name == "TS_03"
    assert metadata.pixel_size_angstrom == pytest.approx(2.125)
    assert metadata.tilt_axis_angle_deg == pytest.approx(-95.3)
    assert metadata.image_size_px == (4096, 4096)
    # acquisition order from DateTime: ZValue 2 was taken before ZValue 1
    assert [t.z_value for t in metadata.tilts] == [0, 2, 1]
    assert [t.acquisition_index for t in metadata.tilts] == [0, 1, 2]
    first = metadata.tilts[0]
    assert first.defocus_angstrom == pytest.approx(35200.0)  # microns, negative = underfocus
    assert metadata.tilts[1].defocus_angstrom is None
    assert first.exposure_dose_e_per_angstrom2 == pytest.approx(3.1)
    assert str(first.sub_frame_path) == "TS_03_001_0.0.tif"
    assert metadata.movie_path(first) == tmp_path.resolve() / "TS_03_001_0.0.tif"


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(MdocError, match="not found"):
        read_tilt_series_mdoc(tmp_path / "absent.mdoc")


def test_section_without_tilt_angle_is_rejected(tmp_path):
    path = tmp_path / "bad.mdoc"
    path.write_text(MDOC.replace("TiltAngle = 2.9987\n", ""))
    with pytest.raises(MdocError, match="ZValue = 1 has no TiltAngle"):
        read_tilt_series_mdoc(path)


def test_no_pixel_size_is_rejected(tmp_path):
    path = tmp_path / "bad.mdoc"
    path.write_text(MDOC.replace("PixelSpacing = 2.125\n", ""))
    with pytest.raises(MdocError, match="PixelSpacing"):
        read_tilt_series_mdoc(path)
