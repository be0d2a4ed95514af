"""Column mapping (units, relative image names) and ingest of emproc.tomo's summary into SQLite."""

from __future__ import annotations

import json

import ispyb.sqlalchemy as models
import pytest
import sqlalchemy as sa
from ispyb_fixtures import make_config

from emproc.ispyb import rows
from emproc.ispyb.ingest import ingest_output_dir
from emproc.ispyb.recipes import em_spa_preprocess, em_tomo_align, em_tomo_preprocess


def tomo_summary(output_dir, name="TS_01"):
    base = output_dir / "Tomograms" / name / name
    statuses = ["used", "used", "dark", "used"]
    return {
        "tilt_series_name": name,
        "mdoc_path": f"/session/{name}.mdoc",
        "tomogram_path": f"{base}_rec.mrc",
        "stack_path": f"{base}.st",
        "xy_snapshot_path": f"{base}_xy.jpg",
        "xz_snapshot_path": f"{base}_xz.jpg",
        "slab_snapshot_path": f"{base}_slab.jpg",
        "residual_plot_path": f"{base}_residuals.png",
        "tilt_axis_angle_deg": 84.2,
        "alignment_residual_angstrom": 15.0,
        "voxel_size_angstrom": 8.0,
        "tomogram_shape_zyx": [128, 480, 512],
        "tilts": [
            {
                "tilt_angle_deg": angle,
                "acquisition_index": k,
                "movie_name": f"{name}_{k:03d}.tiff",
                "accumulated_dose_e_per_angstrom2": 3.0 * k,
                "exposure_dose_e_per_angstrom2": 3.0,
                "defocus_angstrom": 30000.0 + 100 * k,
                "ctf_fit_resolution_angstrom": 9.0,
                "status": status,
            }
            for k, (angle, status) in enumerate(zip([0.0, 3.0, -3.0, 6.0], statuses, strict=True))
        ],
    }


def test_units_follow_the_model_comments():
    picker = em_spa_preprocess.particle_picker_row(
        {"number_of_particles": 5, "particle_diameter_angstrom": 150.0}, "test"
    )
    assert picker["particleDiameter"] == pytest.approx(15.0)  # nm
    ctf = em_spa_preprocess.ctf_row(
        {
            "defocus_u_angstrom": 12000.0,
            "defocus_v_angstrom": 11000.0,
            "astigmatism_angle_deg": 45.0,
            "fit_resolution_angstrom": 3.5,
            "cross_correlation": 0.3,
        },
        {"box_size_px": 512},
        0.07,
        "test",
    )
    assert ctf["estimatedDefocus"] == 11500.0 and ctf["astigmatism"] == 1000.0
    assert ctf["boxSizeX"] == 512.0 and ctf["amplitudeContrast"] == 0.07
    with pytest.raises(rows.IngestInputError, match="test: required key 'astigmatism_angle_deg'"):
        em_spa_preprocess.ctf_row(
            {"defocus_u_angstrom": 1, "defocus_v_angstrom": 1}, {}, None, "test"
        )
    assert str(rows.parse_timestamp("2026-11-29T10:00:00+01:00", "t")) == "2026-11-29 09:00:00"
    ice = em_spa_preprocess.ice_thickness_row(
        {"relative_ice_thickness": dict(minimum=0.1, q1=0.2, median=0.3, q3=0.4, maximum=0.5)}
    )
    assert ice["median"] == pytest.approx(3000.0)  # 10^4 t/lambda, IceBreaker's scale
    assert em_spa_preprocess.ice_thickness_row({"relative_ice_thickness": None}) is None


def test_tomo_summary_rows(tmp_path):
    summary = tomo_summary(tmp_path)
    tilts = em_tomo_preprocess.used_tilts(summary, "/session", "test")
    assert [t["tilt_angle_deg"] for t in tilts] == [0.0, 3.0, 6.0]  # dark one dropped
    assert tilts[2]["movie_path"] == "/session/TS_01_003.tiff"  # beside the mdoc
    assert tilts[2]["acquisition_number"] == 4
    tomogram = em_tomo_align.tomogram_row(summary, "test")
    assert (tomogram["sizeX"], tomogram["sizeY"], tomogram["sizeZ"]) == (512, 480, 128)
    assert tomogram["thickness"] == pytest.approx(102.4)  # nm
    # PATo serves fileDirectory + "/" + column
    assert tomogram["fileDirectory"] == str(tmp_path / "Tomograms" / "TS_01")
    assert (tomogram["centralSliceImage"], tomogram["projXZ"]) == ("TS_01_slab.jpg", "TS_01_xz.jpg")
    assert tomogram["residualErrorSD"] is None  # not in today's _tomo.json
    movie = em_tomo_preprocess.tilt_movie_row(tilts[1], "test")
    assert movie["fluence"] == pytest.approx(6.0)  # 3 before + 3 of this exposure
    assert em_tomo_preprocess.tilt_ctf_row({**tilts[1], "ctf_estimated": False}) is None


def test_tomo_summary_is_ingested(tmp_path, monkeypatch):
    monkeypatch.delenv("ISPYB_CREDENTIALS", raising=False)
    output_dir = tmp_path / "processed"
    summary_path = output_dir / "Tomograms" / "TS_01" / "TS_01_tomo.json"
    summary_path.parent.mkdir(parents=True)
    summary_path.write_text(json.dumps(tomo_summary(output_dir)))
    config = make_config(tmp_path / "session", output_dir)
    result = ingest_output_dir(output_dir, config)
    assert result.units_ingested == 2  # the tilts (em-tomo-preprocess), the tomogram
    engine = sa.create_engine(f"sqlite:///{output_dir / 'ispyb.sqlite'}")
    with engine.connect() as c:
        tomogram = c.execute(sa.select(models.Tomogram)).one()
        assert tomogram.residualErrorMean == pytest.approx(1.5)  # nm
        assert tomogram.thickness == pytest.approx(102.4)  # nm
        axes = c.execute(sa.select(models.TiltImageAlignment.refinedTiltAxis)).scalars().all()
        assert axes == pytest.approx([84.2] * 3)
        dc = c.execute(
            sa.select(models.DataCollection).where(
                models.DataCollection.dataCollectionId == tomogram.dataCollectionId
            )
        ).one()
        assert (dc.axisStart, dc.axisEnd, dc.binning, dc.experimenttype) == (0, 6, 4, "tomo")
        graphs = c.execute(sa.select(models.AutoProcProgramAttachment.fileName)).scalars().all()
        assert graphs == ["TS_01_residuals.png"]
    engine.dispose()


def test_tilt_alignment_is_matched_by_nominal_angle_and_converted_to_nm():
    summary = {
        "pixel_size_angstrom": 2.5,
        "tilt_axis_angle_deg": 84.0,
        # stack order (by angle), not the order of the tilt records handed in
        "tilt_alignment": [
            {"tilt_angle_deg": -3.0, "tilt_axis_angle_deg": 84.5, "magnification": 1.01,
             "residual_mean_px": 0.4},
            {"tilt_angle_deg": 0.0, "tilt_axis_angle_deg": 84.0, "magnification": 1.0,
             "residual_mean_px": 0.2},
            {"tilt_angle_deg": 3.0, "tilt_axis_angle_deg": 83.5, "magnification": 0.99,
             "residual_mean_px": None},
        ],
    }  # fmt: skip
    tilts = [
        {"tilt_angle_deg": a, "defocus_angstrom": 30000.0 + a, "ctf_fit_resolution_angstrom": 9.0}
        for a in (0.0, 3.0, -3.0)
    ]
    rows_ = em_tomo_align.tilt_alignment_rows(summary, tilts, "TS_01_tomo.json")
    assert [r["refinedTiltAngle"] for r in rows_] == [0.0, 3.0, -3.0]
    assert [r["refinedTiltAxis"] for r in rows_] == [84.0, 83.5, 84.5]
    assert [r["refinedMagnification"] for r in rows_] == [1.0, 0.99, 1.01]
    # 0.2 px x 2.5 A/px = 0.5 A = 0.05 nm; a tilt without observations has no residual
    assert [r["residualError"] for r in rows_] == pytest.approx([0.05, None, 0.1])
    assert [r["defocusU"] for r in rows_] == [30000.0, 30003.0, 29997.0]
    with pytest.raises(rows.IngestInputError, match=r"TS_01_tomo.json: .* no tilt at 6 deg"):
        em_tomo_align.tilt_alignment_rows(summary, [{"tilt_angle_deg": 6.0}], "TS_01_tomo.json")


def test_alignment_message_names_method_beads_and_fallback():
    assert (
        em_tomo_align.alignment_message(
            {"alignment_method": "fiducial", "fiducial_beads_used": 14, "fiducial_beads_found": 16}
        )
        == "fiducial alignment: 14 of 16 beads used"
    )
    assert (
        em_tomo_align.alignment_message(
            {"alignment_method": "patch_tracking", "alignment_fallback_reason": "3 beads found"}
        )
        == "patch tracking alignment (fiducials: 3 beads found)"
    )
    assert em_tomo_align.alignment_message({}) is None
