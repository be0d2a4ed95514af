"""What PATo's pages show, from a MariaDB ISPyB that the real workflow filled.

The workflow runs twice on simulated data into one database (the credentials ini names it):
an SPA session (3 movies, picking, one 2D batch) and a tomography session (one tilt series).
Each test then runs the query of a PATo page as pato-backend writes it (`src/pato/crud/*.py`,
read from DiamondLightSource/pato-backend; the joins, filters and file look-ups are the same,
with the `ispyb.sqlalchemy` models, which are lims-utils' ISPyB 5.2.0 tables) and checks that
the page gets the rows and files it shows. docs/ispyb.md maps each page to these rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ispyb.sqlalchemy as models
import pytest
import sqlalchemy as sa
import sqlalchemy.orm
import yaml

from emproc.config import WORKFLOW_ROOT
from emproc.ispyb.schema import init_db

pytestmark = [pytest.mark.mariadb, pytest.mark.slow]

VISIT = "bi12345-1"
SPA_MOVIES = 3


@dataclass(frozen=True)
class Filled:
    engine: sa.Engine
    spa: dict  # the SPA config
    tomo: dict  # the tomography config
    tomo_summary: dict  # Tomograms/Position_1/Position_1_tomo.json


def _run(*command: object, cwd: Path) -> None:
    result = subprocess.run(
        [str(c) for c in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _simulate_and_run(root: Path, kind: str, credentials: Path, *options: str) -> dict:
    config_path = root / kind / "config.yaml"
    emproc = Path(sys.executable).parent / "emproc"
    _run(emproc, "simulate", kind, root / kind / "session", *options,
         "--write-config", config_path, "--output-dir", root / kind / "processed", cwd=root)  # fmt: skip
    config = yaml.safe_load(config_path.read_text())
    config["ispyb"]["credentials"] = str(credentials)
    if kind == "spa":  # a small 2D batch from the few particles of 3 movies
        config["class2d"].update(batch_size=20, number_of_classes=3, iterations=3)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    # up to the ingest (the HTML report is not PATo's business)
    _run(sys.executable, "-m", "snakemake", "--snakefile", WORKFLOW_ROOT / "Snakefile",
         "--configfile", config_path, "--cores", "2", "ispyb_ingest", "--quiet",
         cwd=root / kind)  # fmt: skip
    return config


@pytest.fixture(scope="module")
def filled(mysql_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    root = tmp_path_factory.mktemp("pato")
    name = f"emproc_pato_{uuid.uuid4().hex[:12]}"
    server = sa.create_engine(mysql_server_url, isolation_level="AUTOCOMMIT")
    with server.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE `{name}`")
    url = sa.make_url(f"{mysql_server_url.rstrip('/')}/{name}")
    engine = init_db(url.render_as_string(hide_password=False), seed_visit=VISIT)
    credentials = root / "ispyb.ini"
    credentials.write_text(
        "[ispyb_sqlalchemy]\n"
        f"username = {url.username}\npassword = {url.password or ''}\n"
        f"host = {url.host}\nport = {url.port or 3306}\ndatabase = {name}\n"
    )
    try:
        spa = _simulate_and_run(root, "spa", credentials, "--movies", str(SPA_MOVIES),
                                "--size", "512", "--frames", "6")  # fmt: skip
        tomo = _simulate_and_run(root, "tomo", credentials, "--tilt-step", "6")
        summary_path = Path(tomo["outputs"]["dir"]) / "Tomograms" / "Position_1"
        summary = json.loads((summary_path / "Position_1_tomo.json").read_text())
        yield Filled(engine, spa, tomo, summary)
    finally:
        engine.dispose()
        with server.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        server.dispose()


def rows(filled: Filled, query: sa.Select) -> list[sa.Row]:
    """The query's rows, through an ORM session as pato-backend runs it (entities as objects)."""
    with sa.orm.Session(filled.engine) as session:
        return session.execute(query).all()


def collection_id(filled: Filled, experiment_type_name: str) -> int:
    (row,) = rows(
        filled,
        sa.select(models.DataCollection.dataCollectionId)
        .join(models.DataCollectionGroup)
        .join(models.ExperimentType)
        .where(models.ExperimentType.name == experiment_type_name),
    )
    return row.dataCollectionId


def program_of(filled: Filled, dc_id: int, recipe: str) -> int:
    (row,) = rows(
        filled,
        sa.select(models.AutoProcProgram.autoProcProgramId)
        .join(models.ProcessingJob)
        .where(
            models.ProcessingJob.dataCollectionId == dc_id, models.ProcessingJob.recipe == recipe
        ),
    )
    return row.autoProcProgramId


def spa_movies(filled: Filled) -> list[int]:
    dc_id = collection_id(filled, "Single Particle")
    return [
        r.movieId
        for r in rows(
            filled,
            sa.select(models.Movie.movieId).where(models.Movie.dataCollectionId == dc_id),
        )
    ]


def parse_json_file(path: str) -> list[tuple[float, float]]:
    """pato.utils.generic.parse_json_file: data[0].x and .y paired (a non-JSON file is 500)."""
    with open(path) as handle:
        data = json.load(handle)["data"][0]
    return list(zip(data["x"], data["y"], strict=False))


def test_session_list_and_groups_with_experiment_type(filled):
    # crud/sessions.get_sessions: only microscope (m%) and b24% beamlines, groups counted
    sessions = rows(
        filled,
        sa.select(
            models.BLSession.visit_number,
            sa.func.concat(models.Proposal.proposalCode, models.Proposal.proposalNumber).label(
                "parentProposal"
            ),
            sa.func.count(models.DataCollectionGroup.dataCollectionGroupId.distinct()).label(
                "collectionGroups"
            ),
        )
        .where(
            sa.or_(
                models.BLSession.beamLineName.like("m%"), models.BLSession.beamLineName.like("b24%")
            )
        )
        .join(models.Proposal)
        .join(
            models.DataCollectionGroup,
            models.DataCollectionGroup.sessionId == models.BLSession.sessionId,
            isouter=True,
        )
        .group_by(models.BLSession.visit_number, models.BLSession.proposalId),
    )
    assert [(s.parentProposal, s.visit_number, s.collectionGroups) for s in sessions] == [
        ("bi12345", 1, 2)
    ]
    # crud/groups.get_collection_groups: the frontend picks the SPA or tomography page by name
    groups = rows(
        filled,
        sa.select(
            models.DataCollectionGroup.dataCollectionGroupId,
            models.ExperimentType.name.label("experimentTypeName"),
            models.Atlas.atlasId,
            sa.func.count(models.DataCollection.dataCollectionId.distinct()).label("collections"),
        )
        .select_from(models.DataCollectionGroup)
        .join(models.Atlas, isouter=True)
        .join(models.ExperimentType, isouter=True)
        .join(models.BLSession)
        .join(models.Proposal)
        .join(models.DataCollection, isouter=True)
        .where(models.Proposal.proposalCode == "bi", models.Proposal.proposalNumber == "12345")
        .group_by(models.DataCollectionGroup.dataCollectionGroupId),
    )
    assert sorted((g.experimentTypeName, g.collections) for g in groups) == [
        ("Single Particle", 1),
        ("Tomography", 1),
    ]
    assert [g.atlasId is not None for g in groups if g.experimentTypeName == "Single Particle"]


def test_processing_jobs_by_recipe(filled):
    # crud/collections.get_processing_jobs (+ the status CASE): SPA and tomography jobs
    status = sa.case(
        (models.AutoProcProgram.processingJobId.is_(None), "Submitted"),
        (models.AutoProcProgram.processingStatus == 1, "Success"),
        (models.AutoProcProgram.processingStatus == 0, "Fail"),
        else_="Queued",
    )
    for name, recipes in (
        ("Single Particle", {"em-spa-preprocess", "em-spa-class2d"}),
        ("Tomography", {"em-tomo-preprocess", "em-tomo-align"}),
    ):
        jobs = rows(
            filled,
            sa.select(models.ProcessingJob.recipe, status.label("status"))
            .select_from(models.ProcessingJob)
            .outerjoin(models.AutoProcProgram)
            .where(models.ProcessingJob.dataCollectionId == collection_id(filled, name)),
        )
        assert {(j.recipe, j.status) for j in jobs} == {(r, "Success") for r in recipes}
    # the collection page: pixel size shown as 10 x pixelSizeOnImage in Angstrom
    spa = rows(
        filled,
        sa.select(models.DataCollection).where(
            models.DataCollection.dataCollectionId == collection_id(filled, "Single Particle")
        ),
    )[0].DataCollection
    assert 10 * spa.pixelSizeOnImage == pytest.approx(
        filled.spa["microscope"]["pixel_size_angstrom"]
    )
    assert spa.totalAbsorbedDose > 0 and spa.startTime is not None


def test_motion_ctf_and_picks_per_program(filled):
    program = program_of(filled, collection_id(filled, "Single Particle"), "em-spa-preprocess")
    # crud/autoproc.get_motion_correction: MotionCorrection + Movie + CTF of the program
    motion = rows(
        filled,
        sa.select(models.MotionCorrection, models.CTF, models.Movie)
        .where(models.MotionCorrection.autoProcProgramId == program)
        .join(models.Movie)
        .join(models.CTF)
        .order_by(models.MotionCorrection.imageNumber),
    )
    assert len(motion) == SPA_MOVIES
    assert [m.MotionCorrection.imageNumber for m in motion] == [1, 2, 3]
    times = [m.Movie.createdTimeStamp for m in motion]
    assert times == sorted(times) and str(times[0]) == "2026-11-29 09:00:00"  # EPU time
    # crud/autoproc.get_ctf: CTF and picks, through the same program
    ctf = rows(
        filled,
        sa.select(models.CTF.estimatedDefocus, models.ParticlePicker.numberOfParticles)
        .select_from(models.MotionCorrection)
        .where(models.MotionCorrection.autoProcProgramId == program)
        .join(models.CTF)
        .join(models.ParticlePicker),
    )
    assert len(ctf) == SPA_MOVIES and all(c.estimatedDefocus > 0 for c in ctf)
    # crud/autoproc.get_particle_picker(filterNull=True) and the particle-count histogram
    picks = rows(
        filled,
        sa.select(
            models.ParticlePicker.particlePickerId, models.ParticlePicker.summaryImageFullPath
        )
        .select_from(models.MotionCorrection)
        .filter_by(autoProcProgramId=program)
        .join(models.ParticlePicker)
        .join(models.Movie),
    )
    assert len(picks) == SPA_MOVIES and all(Path(p.summaryImageFullPath).is_file() for p in picks)
    assert (
        rows(
            filled,
            sa.select(sa.func.count()).where(models.ParticlePicker.programId == program),
        )[0][0]
        == SPA_MOVIES
    )


def test_movie_page_drift_foil_hole_images_and_ice(filled):
    program = program_of(filled, collection_id(filled, "Single Particle"), "em-spa-preprocess")
    for movie_id in spa_movies(filled):
        # crud/movies.get_movie_info: Movie inner-joined with FoilHole
        (info,) = rows(
            filled,
            sa.select(models.Movie.movieId, models.FoilHole.gridSquareId)
            .join(models.FoilHole, models.FoilHole.foilHoleId == models.Movie.foilHoleId)
            .where(models.Movie.movieId == movie_id),
        )
        assert info.gridSquareId is not None
        ((motion,),) = rows(
            filled,
            sa.select(models.MotionCorrection).where(models.MotionCorrection.movieId == movie_id),
        )
        # crud/movies.get_drift: the JSON, one point per frame; the micrograph snapshot
        drift = parse_json_file(motion.driftPlotFullPath)
        assert len(drift) == motion.lastFrame == 6 and drift[0] == (0.0, 0.0)
        assert Path(motion.micrographSnapshotFullPath).is_file()
        # crud/movies.get_fft_path: the CTF diagnostic image
        (fft,) = rows(
            filled,
            sa.select(models.CTF.fftTheoreticalFullPath)
            .select_from(models.MotionCorrection)
            .where(models.MotionCorrection.movieId == movie_id)
            .join(
                models.CTF,
                models.CTF.motionCorrectionId == models.MotionCorrection.motionCorrectionId,
            ),
        )
        assert Path(fft.fftTheoreticalFullPath).is_file()
        # crud/movies.get_relative_ice_thickness: this movie's five figures and the averages
        ((ice,),) = rows(
            filled,
            sa.select(models.RelativeIceThickness)
            .select_from(models.MotionCorrection)
            .filter_by(movieId=movie_id)
            .join(models.RelativeIceThickness),
        )
        assert ice.minimum <= ice.q1 <= ice.median <= ice.q3 <= ice.maximum
        # the simulator models no ice: t/lambda is ~0 (10^4 scale): the counts and dose agree
        assert abs(ice.median) < 500
    (averages,) = rows(
        filled,
        sa.select(sa.func.count(models.RelativeIceThickness.relativeIceThicknessId))
        .select_from(models.MotionCorrection)
        .filter_by(movieId=spa_movies(filled)[0])
        .join(
            models.RelativeIceThickness,
            models.RelativeIceThickness.autoProcProgramId
            == models.MotionCorrection.autoProcProgramId,
        ),
    )
    assert averages[0] == SPA_MOVIES
    # crud/generic.get_ice_histogram("dataCollection"): DC -> job -> program -> ice
    (histogram,) = rows(
        filled,
        sa.select(sa.func.count(models.RelativeIceThickness.relativeIceThicknessId))
        .select_from(models.DataCollection)
        .filter_by(dataCollectionId=collection_id(filled, "Single Particle"))
        .join(models.ProcessingJob)
        .join(models.AutoProcProgram)
        .join(models.RelativeIceThickness),
    )
    assert histogram[0] == SPA_MOVIES
    # crud/grid_squares.get_foil_holes: every movie sits in a foil hole of a grid square
    foil_holes = rows(
        filled,
        sa.select(
            models.FoilHole.foilHoleId, sa.func.count(models.Movie.movieId.distinct()).label("n")
        )
        .join(models.Movie, models.Movie.foilHoleId == models.FoilHole.foilHoleId, isouter=True)
        .group_by(models.FoilHole.foilHoleId),
    )
    assert sum(f.n for f in foil_holes) == SPA_MOVIES
    assert program  # the program owning all of it


def test_2d_classes(filled):
    program = program_of(filled, collection_id(filled, "Single Particle"), "em-spa-class2d")
    # crud/autoproc.get_classification(classType="2d")
    classes = rows(
        filled,
        sa.select(models.ParticleClassificationGroup, models.ParticleClassification)
        .where(
            models.ParticleClassificationGroup.programId == program,
            models.ParticleClassificationGroup.type == "2D",
        )
        .join(models.ParticleClassification, isouter=True),
    )
    assert 1 <= len(classes) <= filled.spa["class2d"]["number_of_classes"]
    assert all(Path(c.ParticleClassification.classImageFullPath).is_file() for c in classes)
    assert sum(c.ParticleClassification.particlesPerClass for c in classes) == (
        classes[0].ParticleClassificationGroup.numberOfParticlesPerBatch
    )


def test_tomogram_images_and_tilts(filled):
    dc_id = collection_id(filled, "Tomography")
    # crud/collections.get_tomograms: per job; the frontend keeps em-tomo-* recipes
    tomograms = rows(
        filled,
        sa.select(models.Tomogram, models.ProcessingJob.recipe)
        .select_from(models.ProcessingJob)
        .outerjoin(models.AutoProcProgram)
        .outerjoin(models.Tomogram)
        .where(models.ProcessingJob.dataCollectionId == dc_id),
    )
    aligned = [t.Tomogram for t in tomograms if t.Tomogram is not None]
    assert [t.recipe for t in tomograms if t.Tomogram is not None] == ["em-tomo-align"]
    (tomogram,) = aligned
    # crud/tomograms._get_generic_tomogram_file: fileDirectory + "/" + column, on disk
    for column in ("centralSliceImage", "projXY", "projXZ", "xyShiftPlot"):
        (path,) = rows(
            filled,
            sa.select(
                sa.func.concat(models.Tomogram.fileDirectory, "/", getattr(models.Tomogram, column))
            ).where(models.Tomogram.tomogramId == tomogram.tomogramId),
        )[0]
        assert Path(path).is_file(), column
    used = [t for t in filled.tomo_summary["tilts"] if t["status"] == "used"]
    shifts = parse_json_file(f"{tomogram.fileDirectory}/{tomogram.xyShiftPlot}")
    assert len(shifts) == len(used)
    # crud/autoproc.get_tomogram: the tomogram with a tilt's refined axis
    (info,) = rows(
        filled,
        sa.select(models.Tomogram.tomogramId, models.TiltImageAlignment.refinedTiltAxis)
        .where(models.Tomogram.autoProcProgramId == tomogram.autoProcProgramId)
        .join(models.TiltImageAlignment)
        .limit(1),
    )
    assert info.refinedTiltAxis == pytest.approx(
        filled.tomo_summary["tilt_axis_angle_deg"], abs=1e-3
    )
    # crud/tomograms.get_motion_correction: Movie -> MotionCorrection -> CTF (+ alignment)
    tilts = rows(
        filled,
        sa.select(
            models.Movie.movieId,
            models.MotionCorrection.totalMotion,
            models.TiltImageAlignment.refinedTiltAngle,
        )
        .select_from(models.Movie)
        .where(models.Movie.dataCollectionId == dc_id)
        .join(models.MotionCorrection, models.MotionCorrection.movieId == models.Movie.movieId)
        .join(
            models.CTF, models.CTF.motionCorrectionId == models.MotionCorrection.motionCorrectionId
        )
        .outerjoin(
            models.TiltImageAlignment, models.TiltImageAlignment.movieId == models.Movie.movieId
        )
        .group_by(models.Movie.movieId),
    )
    assert len(tilts) == len(used) and all(t.refinedTiltAngle is not None for t in tilts)
    assert all(t.totalMotion >= 0 for t in tilts)  # measured per tilt by motion correction
    # crud/tomograms.get_ctf: per tilt, by refined tilt angle
    ctf = rows(
        filled,
        sa.select(models.CTF.estimatedDefocus, models.TiltImageAlignment.refinedTiltAngle)
        .where(models.TiltImageAlignment.tomogramId == tomogram.tomogramId)
        .join(
            models.MotionCorrection,
            models.MotionCorrection.movieId == models.TiltImageAlignment.movieId,
        )
        .join(
            models.CTF, models.CTF.motionCorrectionId == models.MotionCorrection.motionCorrectionId
        )
        .order_by(models.TiltImageAlignment.refinedTiltAngle),
    )
    estimated = [t for t in used if t["ctf_estimated"]]
    assert len(ctf) == len(estimated)
    assert sorted(c.estimatedDefocus for c in ctf) == pytest.approx(
        sorted(t["defocus_angstrom"] for t in estimated), rel=1e-5
    )
    # the tomography collection has its acquisition times (mdoc DateTime)
    ((collection,),) = rows(
        filled,
        sa.select(models.DataCollection).where(models.DataCollection.dataCollectionId == dc_id),
    )
    assert collection.startTime is not None and collection.endTime > collection.startTime


def test_denoised_tomogram_page(filled):
    """crud/tomograms._get_movie with movieType "denoised": the ProcessedTomogram of type
    "Denoised" under the tomogram, its filePath with .mrc -> _thumbnail.jpeg / _movie.png."""
    dc_id = collection_id(filled, "Tomography")
    ((tomogram_id,),) = rows(
        filled,
        sa.select(models.Tomogram.tomogramId).where(models.Tomogram.dataCollectionId == dc_id),
    )
    (base_path,) = rows(
        filled,
        sa.select(models.ProcessedTomogram.filePath).filter(
            models.ProcessedTomogram.tomogramId == tomogram_id,
            models.ProcessedTomogram.processingType == "denoised".capitalize(),
        ),
    )[0]
    assert base_path == filled.tomo_summary["denoised_tomogram_path"]
    for suffix in ("_thumbnail.jpeg", "_movie.png"):
        assert Path(base_path.replace(".mrc", suffix)).is_file(), suffix


def test_tomogram_alignment_quality_of_the_beaded_series(filled):
    """The simulated series carries gold beads: the tomogram info panel shows the fiducial
    fit's residual (nm) and z shift, each tilt its refined axis, magnification and residual."""
    summary = filled.tomo_summary
    assert summary["alignment_method"] == "fiducial", summary.get("alignment_fallback_reason")
    dc_id = collection_id(filled, "Tomography")
    program = program_of(filled, dc_id, "em-tomo-align")
    # crud/autoproc.get_tomogram: Tomogram of the program (+ a tilt alignment)
    ((tomogram,),) = rows(
        filled,
        sa.select(models.Tomogram).where(models.Tomogram.autoProcProgramId == program),
    )
    # MariaDB FLOAT columns hold single precision: rel 1e-5
    assert tomogram.residualErrorMean == pytest.approx(
        summary["alignment_residual_mean_nm"], rel=1e-5
    )
    assert tomogram.residualErrorSD == pytest.approx(summary["alignment_residual_sd_nm"], rel=1e-5)
    # nm = unbinned px x pixel size / 10: the ingest copies, the test recomputes
    nm_per_px = summary["pixel_size_angstrom"] / 10
    assert tomogram.residualErrorMean == pytest.approx(
        summary["alignment_residual_mean_px"] * nm_per_px, rel=1e-5
    )
    assert 0 < tomogram.residualErrorMean < 2.0  # a sub-nm to nm fit on simulated beads
    assert tomogram.zShift == pytest.approx(summary["z_shift_px"], rel=1e-5, abs=1e-3)
    assert tomogram.xAxisCorrection == 0.0
    # the job's status line names the method and the beads (ISPyB has no column for them)
    ((message,),) = rows(
        filled,
        sa.select(models.AutoProcProgram.processingMessage).where(
            models.AutoProcProgram.autoProcProgramId == program
        ),
    )
    assert message == (
        f"fiducial alignment: {summary['fiducial_beads_used']} of "
        f"{summary['fiducial_beads_found']} beads used"
    )
    # crud/tomograms.get_motion_correction's TiltImageAlignment, per tilt by nominal angle
    per_tilt = rows(
        filled,
        sa.select(models.Movie.angle, models.TiltImageAlignment)
        .join(models.TiltImageAlignment, models.TiltImageAlignment.movieId == models.Movie.movieId)
        .where(models.TiltImageAlignment.tomogramId == tomogram.tomogramId)
        .order_by(models.Movie.angle),
    )
    expected = sorted(summary["tilt_alignment"], key=lambda t: t["tilt_angle_deg"])
    assert len(per_tilt) == len(expected) == sum(t["status"] == "used" for t in summary["tilts"])
    for row, tilt in zip(per_tilt, expected, strict=True):
        alignment = row.TiltImageAlignment
        assert row.angle == pytest.approx(tilt["tilt_angle_deg"], abs=1e-3)
        assert alignment.refinedTiltAngle == pytest.approx(tilt["tilt_angle_deg"], abs=1e-3)
        assert alignment.refinedTiltAxis == pytest.approx(tilt["tilt_axis_angle_deg"], abs=1e-3)
        assert alignment.refinedMagnification == pytest.approx(tilt["magnification"], rel=1e-5)
        if tilt["residual_mean_px"] is None:
            assert alignment.residualError is None
        else:
            assert alignment.residualError == pytest.approx(
                tilt["residual_mean_px"] * nm_per_px, rel=1e-5
            )
    assert (
        sum(r.TiltImageAlignment.residualError is not None for r in per_tilt) >= len(expected) - 2
    )
