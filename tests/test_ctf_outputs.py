"""Per-micrograph outputs (CTFFIND4 text, _ctf.json, PNG), the pipeline wrapper and the
aggregate micrographs_ctf.star."""

import json
from pathlib import Path
from types import SimpleNamespace

import mrcfile
import numpy as np
import pytest
import starfile

from emproc.ctf import (
    CtfParameterError,
    MicrographReadError,
    estimate_ctf,
    estimate_ctf_for_micrograph,
    load_json,
    write_micrographs_ctf_star,
)
from emproc.ctf.outputs import CTFFIND_COLUMNS
from emproc.ctf.star import CtfStarError
from emproc.ctf.synthetic import synthetic_ctf_micrograph

SUMMARY_KEYS = {
    "movie_name", "micrograph_path", "defocus_u_angstrom", "defocus_v_angstrom",
    "astigmatism_angle_deg", "astigmatism_angstrom", "phase_shift_deg", "cross_correlation",
    "fit_resolution_angstrom", "diagnostic_image_path", "ctf_image_path", "ctffind_txt_path",
    "box_size_px",
    "min_resolution_angstrom", "max_resolution_angstrom",
}  # fmt: skip


def import_record(name="GridSquare_1/Data/FoilHole_1_fractions", group=1, pixel=1.0):
    return {
        "movie_name": name,
        "pixel_size_angstrom": pixel,
        "voltage_kv": 300.0,
        "spherical_aberration_mm": 2.7,
        "amplitude_contrast": 0.1,
        "optics_group": group,
        "optics_group_name": f"opticsGroup{group}",
    }


def motion_record(name, pixel=1.0):
    return {
        "movie_name": name,
        "micrograph_path": f"MotionCorr/{name}.mrc",
        "micrograph_dw_path": f"MotionCorr/{name}_DW.mrc",
        "shifts_star_path": f"MotionCorr/{name}.star",
        "pixel_size_angstrom": pixel,
        "total_motion_angstrom": 12.5,
        "early_motion_angstrom": 8.0,
        "late_motion_angstrom": 4.5,
    }


def ctf_record(name, phase=0.0):
    return {
        "movie_name": name,
        "micrograph_path": f"MotionCorr/{name}.mrc",
        "defocus_u_angstrom": 15100.0,
        "defocus_v_angstrom": 14900.0,
        "astigmatism_angle_deg": -30.0,
        "astigmatism_angstrom": 200.0,
        "phase_shift_deg": phase,
        "cross_correlation": 0.4,
        "fit_resolution_angstrom": 3.9,
        "diagnostic_image_path": f"CtfFind/{name}_ctf.png",
        "ctf_image_path": f"CtfFind/{name}.ctf",
        "ctffind_txt_path": f"CtfFind/{name}.txt",
    }


@pytest.fixture(scope="module")
def micrograph_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("motion") / "FoilHole_1_fractions.mrc"
    image = synthetic_ctf_micrograph((1024, 1024), 1.3, 18300.0, 17500.0, 25.0, seed=11)
    with mrcfile.new(path) as mrc:
        mrc.set_data(image)
        mrc.voxel_size = 1.3
    return path


def outputs_in(directory):
    return {
        "ctffind_txt": directory / "CtfFind" / "m.txt",
        "summary": directory / "CtfFind" / "m_ctf.json",
        "diagnostic": directory / "CtfFind" / "m_ctf.png",
        "ctf_image": directory / "CtfFind" / "m.ctf",
    }


def test_pipeline_wrapper_writes_all_outputs(micrograph_file, tmp_path):
    outputs = outputs_in(tmp_path)
    # the Import pixel size is deliberately wrong: the MRC header (1.3 A) must win
    summary = estimate_ctf_for_micrograph(
        micrograph_file, import_record(pixel=0.65), {"box_size_px": 384}, outputs
    )
    assert set(summary) == SUMMARY_KEYS
    assert json.loads(outputs["summary"].read_text()) == summary
    mean = 0.5 * (summary["defocus_u_angstrom"] + summary["defocus_v_angstrom"])
    assert mean == pytest.approx(17900.0, rel=0.01)
    assert summary["box_size_px"] == 384 and summary["max_resolution_angstrom"] == 5.0

    lines = outputs["ctffind_txt"].read_text().splitlines()
    assert lines[0].startswith("# Output from CTFFind version 4.1")
    assert lines[1] == f"# Input file: {micrograph_file} ; Number of micrographs: 1"
    assert lines[2].startswith("# Pixel size: 1.300 Angstroms ; acceleration voltage: 300.0 keV")
    assert lines[3].startswith("# Box size: 384 pixels ; min. res.: 30.0 Angstroms")
    assert lines[4] == CTFFIND_COLUMNS
    values = np.loadtxt(outputs["ctffind_txt"], comments="#")
    assert values.shape == (7,)
    expected = [1.0, summary["defocus_u_angstrom"], summary["defocus_v_angstrom"],
                summary["astigmatism_angle_deg"], 0.0, summary["cross_correlation"],
                summary["fit_resolution_angstrom"]]  # fmt: skip
    np.testing.assert_allclose(values, expected, atol=1e-5)

    png = outputs["diagnostic"].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert summary["ctf_image_path"] == str(outputs["ctf_image"])
    assert mirrored_fit_correlation(outputs["ctf_image"]) > CTF_IMAGE_MIN_CORRELATION
    assert not list(outputs["summary"].parent.glob(".*"))  # no temporary files left


CTF_IMAGE_MIN_CORRELATION = 0.3  # 0.49 for this fit; -0.05 with defocus 15 % off


def mirrored_fit_correlation(path) -> float:
    """The `.ctf` MRC holds the spectrum (left) and the fitted CTF^2 (right): correlate the
    fit with the spectrum at the Friedel-mirrored frequencies, over the rings."""
    with mrcfile.open(path) as mrc:
        image = mrc.data.astype(np.float64)
        assert mrc.voxel_size.x > 0
    n = image.shape[0]
    assert image.shape == (n, n) and 0.0 <= image.min() and image.max() <= 1.0
    ys = np.arange(n)[:, None]
    xs = np.arange(n // 2 + 1, n)[None, :]
    fit = image[:, n // 2 + 1 :]
    spectrum = image[(n - ys) % n, n - xs]
    radius = np.hypot(ys - n // 2, xs - n // 2)
    rings = (radius > 0.1 * n) & (radius < 0.4 * n)
    return float(np.corrcoef(fit[rings], spectrum[rings])[0, 1])


def test_ctffind_text_gives_phase_shift_in_radians(tmp_path):
    from emproc.ctf.outputs import write_ctffind_txt

    image = synthetic_ctf_micrograph((512, 512), 1.0, 9000, 9000, 0, phase_shift_deg=90.0)
    result = estimate_ctf(image, pixel_size_angstrom=1.0, box_size_px=256, phase_plate=True)
    header = dict(
        micrograph_path="x.mrc", pixel_size_angstrom=1.0, voltage_kv=300.0,
        spherical_aberration_mm=2.7, amplitude_contrast=0.1, box_size_px=256,
        min_resolution_angstrom=30.0, max_resolution_angstrom=5.0,
        min_defocus_angstrom=5000.0, max_defocus_angstrom=50000.0,
    )  # fmt: skip
    write_ctffind_txt(tmp_path / "x.txt", result, **header)
    values = np.loadtxt(tmp_path / "x.txt", comments="#")
    assert values[4] == pytest.approx(np.deg2rad(result.phase_shift_deg), abs=1e-6)
    assert values[4] == pytest.approx(np.pi / 2, abs=np.deg2rad(5.0))


def test_missing_micrograph_is_named(tmp_path):
    with pytest.raises(MicrographReadError, match="nothere.mrc: file not found"):
        estimate_ctf_for_micrograph(
            tmp_path / "nothere.mrc", import_record(), {}, outputs_in(tmp_path)
        )


def test_truncated_micrograph_is_named(micrograph_file, tmp_path):
    broken = tmp_path / "broken.mrc"
    broken.write_bytes(micrograph_file.read_bytes()[:100_000])
    with pytest.raises(MicrographReadError, match="broken.mrc: not a readable MRC"):
        estimate_ctf_for_micrograph(broken, import_record(), {}, outputs_in(tmp_path))
    assert not outputs_in(tmp_path)["summary"].exists()


def test_stack_is_rejected(tmp_path):
    path = tmp_path / "stack.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.zeros((3, 64, 64), dtype=np.float32))
    with pytest.raises(MicrographReadError, match="stack.mrc: expected a 2D image"):
        estimate_ctf_for_micrograph(path, import_record(), {}, outputs_in(tmp_path))


def test_unknown_ctf_parameter_is_rejected(micrograph_file, tmp_path):
    with pytest.raises(CtfParameterError, match="box_size"):
        estimate_ctf_for_micrograph(
            micrograph_file, import_record(), {"box_size": 512}, outputs_in(tmp_path)
        )


def test_load_json_names_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CtfParameterError, match="bad.json: not valid JSON"):
        load_json(tmp_path / "bad.json")
    with pytest.raises(MicrographReadError, match="none.json: file not found"):
        load_json(tmp_path / "none.json")


def test_micrographs_ctf_star_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the records' relative paths are inside the STAR's directory
    names = ["Disc1/GS_1/Data/FH_1_fractions", "Disc1/GS_2/Data/FH_2_fractions"]
    path = tmp_path / "micrographs_ctf.star"
    write_micrographs_ctf_star(
        [ctf_record(name) for name in names],
        [motion_record(name) for name in names],
        [import_record(names[0], group=1), import_record(names[1], group=2, pixel=1.1)],
        path,
    )
    star = starfile.read(path, always_dict=True)
    optics, micrographs = star["optics"], star["micrographs"]
    assert list(optics["rlnOpticsGroup"]) == [1, 2]
    assert list(optics["rlnOpticsGroupName"]) == ["opticsGroup1", "opticsGroup2"]
    assert list(optics["rlnMicrographOriginalPixelSize"]) == [1.0, 1.1]
    for column in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast",
                   "rlnMicrographPixelSize"):  # fmt: skip
        assert column in optics
    assert list(micrographs["rlnMicrographName"]) == [f"MotionCorr/{n}_DW.mrc" for n in names]
    assert list(micrographs["rlnMicrographNameNoDW"]) == [f"MotionCorr/{n}.mrc" for n in names]
    assert list(micrographs["rlnOpticsGroup"]) == [1, 2]
    row = micrographs.iloc[0]
    assert row["rlnDefocusU"] == 15100.0 and row["rlnDefocusV"] == 14900.0
    assert row["rlnCtfAstigmatism"] == 200.0 and row["rlnDefocusAngle"] == -30.0
    assert row["rlnCtfFigureOfMerit"] == 0.4 and row["rlnCtfMaxResolution"] == 3.9
    assert row["rlnCtfImage"] == f"CtfFind/{names[0]}.ctf:mrc"  # as RELION names it
    assert "rlnPhaseShift" not in micrographs


def test_phase_shift_column_appears_for_phase_plate_data(tmp_path):
    name = "FH_1_fractions"
    path = tmp_path / "micrographs_ctf.star"
    write_micrographs_ctf_star(
        [ctf_record(name, phase=72.0)], [motion_record(name)], [import_record(name)], path
    )
    micrographs = starfile.read(path, always_dict=True)["micrographs"]
    assert float(micrographs["rlnPhaseShift"].iloc[0]) == 72.0


def test_star_inputs_must_line_up(tmp_path):
    path = tmp_path / "micrographs_ctf.star"
    with pytest.raises(CtfStarError, match="match one to one"):
        write_micrographs_ctf_star([ctf_record("a")], [], [import_record("a")], path)
    with pytest.raises(CtfStarError, match="out of order"):
        write_micrographs_ctf_star(
            [ctf_record("a"), ctf_record("b")],
            [motion_record("b"), motion_record("a")],
            [import_record("a"), import_record("b")],
            path,
        )
    conflicting = import_record("b")
    conflicting["voltage_kv"] = 200.0
    with pytest.raises(CtfStarError, match="optics group 1"):
        write_micrographs_ctf_star(
            [ctf_record("a"), ctf_record("b")],
            [motion_record("a"), motion_record("b")],
            [import_record("a"), conflicting],
            path,
        )
    assert not path.exists()


class _Files(SimpleNamespace):
    """Stand-in for Snakemake's named input/output lists (attribute, item and keys())."""

    def keys(self):
        return vars(self).keys()

    def __getitem__(self, key):
        return getattr(self, key)


def test_snakemake_adapters(micrograph_file, tmp_path):
    """scripts/movie_stage.py (CTF stage of a chunk) and scripts/aggregate_ctf.py with a
    stand-in `snakemake`: a movie with no micrograph fails alone and stays out of the STAR."""
    import runpy
    import shutil

    scripts = Path(__file__).resolve().parents[1] / "scripts"
    name, broken = "FoilHole_1_fractions", "FoilHole_2_fractions"
    for movie in (name, broken):
        metadata_path = tmp_path / "Import" / f"{movie}.json"
        metadata_path.parent.mkdir(exist_ok=True)
        metadata_path.write_text(json.dumps(import_record(movie, pixel=1.3)))
        motion_path = tmp_path / "MotionCorr" / f"{movie}_motion.json"
        motion_path.parent.mkdir(exist_ok=True)
        motion_path.write_text(json.dumps(motion_record(movie, pixel=1.3)))
    shutil.copy(micrograph_file, tmp_path / "MotionCorr" / f"{name}.mrc")
    motion_manifest = tmp_path / "Chunks" / "00001" / "motion.json"
    motion_manifest.parent.mkdir(parents=True)
    motion_manifest.write_text(json.dumps({"succeeded": [name, broken], "failed": {}}))
    ctf_manifest = tmp_path / "Chunks" / "00001" / "ctf.json"
    job = SimpleNamespace(
        input=_Files(upstream=[str(motion_manifest)]),
        output=_Files(manifest=str(ctf_manifest)),
        params=SimpleNamespace(stage="ctf"),
        wildcards=SimpleNamespace(chunk="00001"),
        config={"ctf": {"box_size_px": 256, "defocus_step_angstrom": 1000.0}},
        threads=2,
        log=[str(tmp_path / "logs" / "chunks" / "00001" / "ctf.log")],
    )
    runpy.run_path(str(scripts / "movie_stage.py"), init_globals={"snakemake": job})
    manifest = json.loads(ctf_manifest.read_text())
    assert manifest["succeeded"] == [name]
    assert broken in manifest["failed"] and f"{broken}.mrc" in manifest["failed"][broken]
    record = json.loads((tmp_path / "failures" / "ctf" / f"{broken}.json").read_text())
    assert record["chunk"] == "00001"
    assert not (tmp_path / "failures" / "ctf" / f"{name}.json").exists()
    summary = load_json(tmp_path / "CtfFind" / f"{name}_ctf.json")
    assert summary["box_size_px"] == 256
    assert "ctf" in (tmp_path / "logs" / "ctf" / f"{broken}.log").read_text()
    aggregate = SimpleNamespace(
        input=_Files(manifests=[str(ctf_manifest)]),
        output=_Files(star=str(tmp_path / "micrographs_ctf.star")),
        log=[str(tmp_path / "logs" / "micrographs_ctf.log")],
    )
    runpy.run_path(str(scripts / "aggregate_ctf.py"), init_globals={"snakemake": aggregate})
    micrographs = starfile.read(tmp_path / "micrographs_ctf.star", always_dict=True)["micrographs"]
    assert len(micrographs) == 1
    assert micrographs["rlnDefocusU"].iloc[0] == pytest.approx(summary["defocus_u_angstrom"])
