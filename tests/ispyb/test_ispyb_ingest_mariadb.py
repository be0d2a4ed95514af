"""Ingest into a real MariaDB: values, idempotency, updates, retries, missing visit."""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import ispyb.sqlalchemy as models
import pytest
import sqlalchemy as sa
from ispyb_fixtures import NUMBER_OF_MOVIES, START, VISIT, movie_name

from emproc.ispyb.connect import DatabaseTarget
from emproc.ispyb.ingest import VisitNotFoundError, ingest_output_dir
from emproc.ispyb.retry import RetriesExhaustedError, RetryPolicy
from emproc.ispyb.schema import init_db, schema_tables

pytestmark = pytest.mark.mariadb

UNITS = 2 * NUMBER_OF_MOVIES + 3
FAST_RETRY = RetryPolicy(max_attempts=4, initial_delay_s=0.05, max_delay_s=0.2)
COUNTED = (
    "DataCollectionGroup",
    "DataCollection",
    "ProcessingJob",
    "ProcessingJobParameter",
    "AutoProcProgram",
    "AutoProcProgramAttachment",
    "Movie",
    "MotionCorrection",
    "CTF",
    "RelativeIceThickness",
    "Atlas",
    "GridSquare",
    "FoilHole",
    "ParticlePicker",
    "ParticleClassificationGroup",
    "ParticleClassification",
    "Tomogram",
    "TiltImageAlignment",
    "ProcessedTomogram",
)


def counts(engine: sa.Engine, tables: tuple[str, ...] = COUNTED) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            t: connection.exec_driver_sql(f"SELECT COUNT(*) FROM `{t}`").scalar() for t in tables
        }


def ingest(engine: sa.Engine, url: str, output_dir: Path, config: dict[str, Any], **kw: Any):
    return ingest_output_dir(
        output_dir,
        config,
        engine=engine,
        target=DatabaseTarget(url, embedded=False),
        policy=kw.pop("policy", FAST_RETRY),
        **kw,
    )


def test_full_ingest_rows_and_values(mysql_engine, mysql_url, spa_session):
    output_dir, config = spa_session
    inspector = sa.inspect(mysql_engine)
    for table in schema_tables():  # the inline-KEY DDL made the models' columns and indexes
        assert [c["name"] for c in inspector.get_columns(table.name)] == list(table.c.keys())
        found = {i["name"]: i["column_names"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            assert found[index.name] == [c.name for c in index.columns]
    summary = ingest(mysql_engine, mysql_url, output_dir, config)
    # 3 movies + 3 pickings + 1 class batch + the tilt series' tilts and tomogram
    assert summary.units_ingested == UNITS
    assert counts(mysql_engine) == {
        "DataCollectionGroup": 2,
        "DataCollection": 2,
        "ProcessingJob": 4,  # em-spa-preprocess, em-spa-class2d, em-tomo-preprocess, -align
        "ProcessingJobParameter": counts(mysql_engine)["ProcessingJobParameter"],
        "AutoProcProgram": 4,
        "AutoProcProgramAttachment": 2,
        "Movie": NUMBER_OF_MOVIES + 5,
        "MotionCorrection": NUMBER_OF_MOVIES + 5,
        "CTF": NUMBER_OF_MOVIES + 5,
        "RelativeIceThickness": NUMBER_OF_MOVIES,
        "Atlas": 1,
        "GridSquare": 1,
        "FoilHole": NUMBER_OF_MOVIES,
        "ParticlePicker": NUMBER_OF_MOVIES,
        "ParticleClassificationGroup": 1,
        "ParticleClassification": 4,
        "Tomogram": 1,
        "TiltImageAlignment": 5,
        "ProcessedTomogram": 0,
    }
    with mysql_engine.connect() as c:
        session_id = c.execute(sa.select(models.BLSession.sessionId)).scalar_one()
        spa = c.execute(
            sa.select(models.DataCollection).where(models.DataCollection.experimenttype == "EM")
        ).one()
        assert spa.SESSIONID == session_id and spa.numberOfImages == NUMBER_OF_MOVIES
        assert spa.voltage == 300 and spa.boxSize_CTF == 512 and spa.totalExposedDose == 40
        assert spa.totalAbsorbedDose == 40 and spa.pixelSizeOnImage == pytest.approx(0.1)  # nm
        assert spa.particleDiameter == pytest.approx(15.0)  # nm, mean of 120 and 180 A
        assert spa.bgRadius == pytest.approx(24 * 4.0 / 10)  # 24 px of 4 A, in nm
        assert (spa.minDefocus, spa.maxDefocus) == (15000, 17000)
        assert (str(spa.startTime), str(spa.endTime)) == (
            "2026-11-29 10:00:00",
            "2026-11-29 10:01:00",
        )
        group = c.execute(
            sa.select(models.DataCollectionGroup).where(
                models.DataCollectionGroup.dataCollectionGroupId == spa.dataCollectionGroupId
            )
        ).one()
        assert group.experimentType == "EM" and group.sessionId == session_id
        assert group.experimentTypeId == 37  # "Single Particle"
        keys = set(c.execute(sa.select(models.ProcessingJobParameter.parameterKey)).scalars())
        assert "ctf.box_size_px" in keys and not any(k.startswith("ispyb") for k in keys)

        for i in range(NUMBER_OF_MOVIES):
            name = movie_name(i)
            movie = c.execute(
                sa.select(models.Movie).where(models.Movie.movieFullPath.like(f"%{name}.tiff"))
            ).one()
            assert movie.dataCollectionId == spa.dataCollectionId
            assert movie.numberOfFrames == 40 and movie.fluence == pytest.approx(40.0)
            assert movie.nominalDefocus == pytest.approx(15000 + 1000 * i)
            assert movie.createdTimeStamp == START + datetime.timedelta(seconds=30 * i)
            hole = c.execute(
                sa.select(models.FoilHole).where(models.FoilHole.foilHoleId == movie.foilHoleId)
            ).one()
            assert hole.foilHoleLabel == str(100 + i)
            motion = c.execute(
                sa.select(models.MotionCorrection).where(
                    models.MotionCorrection.movieId == movie.movieId
                )
            ).one()
            assert motion.totalMotion == pytest.approx(10.0 + i)
            assert motion.averageMotionPerFrame == pytest.approx(
                (10.0 + i) / 39, rel=1e-5
            )  # FLOAT column
            assert (motion.firstFrame, motion.lastFrame, motion.patchesUsedX) == (1, 40, 5)
            assert motion.imageNumber == i + 1  # acquisition order
            assert motion.driftPlotFullPath.endswith(f"{name}_drift.json")
            ice = c.execute(
                sa.select(models.RelativeIceThickness).where(
                    models.RelativeIceThickness.motionCorrectionId == motion.motionCorrectionId
                )
            ).one()
            assert ice.median == pytest.approx(10000 * (0.25 + 0.1 * i))
            assert ice.autoProcProgramId == motion.autoProcProgramId
            ctf = c.execute(
                sa.select(models.CTF).where(
                    models.CTF.motionCorrectionId == motion.motionCorrectionId
                )
            ).one()
            assert ctf.estimatedDefocus == pytest.approx(15000 + 1000 * i)
            assert ctf.astigmatism == pytest.approx(200.0)
            assert ctf.astigmatismAngle == pytest.approx(30.0 + i)
            assert ctf.estimatedResolution == pytest.approx(4.0 + 0.5 * i)
            assert ctf.ccValue == pytest.approx(0.2 + 0.01 * i)
            assert ctf.autoProcProgramId == motion.autoProcProgramId
            picker = c.execute(
                sa.select(models.ParticlePicker).where(
                    models.ParticlePicker.firstMotionCorrectionId == motion.motionCorrectionId
                )
            ).one()
            assert picker.numberOfParticles == 100 + 10 * i
            assert picker.particleDiameter == pytest.approx(15.0)  # nm
            assert picker.programId == motion.autoProcProgramId

        classes = c.execute(
            sa.select(models.ParticleClassification).order_by(
                models.ParticleClassification.classNumber
            )
        ).all()
        assert [k.particlesPerClass for k in classes] == [150, 100, 50, 30]
        assert [k.selected for k in classes] == [1, 1, 0, 0]
        assert classes[0].classDistribution == pytest.approx(150 / 330, rel=1e-5)

        tomogram = c.execute(sa.select(models.Tomogram)).one()
        assert (tomogram.sizeX, tomogram.sizeY, tomogram.sizeZ) == (1000, 1000, 256)
        assert tomogram.residualErrorMean == pytest.approx(1.2)  # nm
        assert tomogram.centralSliceImage == "Position_1_slab.jpg"  # in fileDirectory
        assert tomogram.xyShiftPlot == "Position_1_xy_shifts.json"
        tilt_dc = c.execute(
            sa.select(models.DataCollection).where(
                models.DataCollection.dataCollectionId == tomogram.dataCollectionId
            )
        ).one()
        assert (tilt_dc.axisStart, tilt_dc.axisEnd, tilt_dc.numberOfImages) == (-6, 6, 5)
        tilts = c.execute(
            sa.select(
                models.Movie.angle,
                models.TiltImageAlignment.refinedTiltAngle,
                models.TiltImageAlignment.refinedTiltAxis,
            )
            .join(
                models.TiltImageAlignment, models.TiltImageAlignment.movieId == models.Movie.movieId
            )
            .order_by(models.Movie.movieNumber)
        ).all()
        assert [t.angle for t in tilts] == [0, 3, -3, 6, -6]
        assert [t.refinedTiltAngle for t in tilts] == pytest.approx([0, 3, -3, 6, -6])
        assert tilts[4].refinedTiltAxis == pytest.approx(85.0)
    state = json.loads((output_dir / "ISPyB" / "ingest_state.json").read_text())
    assert state["session_id"] == session_id and state["units_total"] == summary.units_ingested


def test_rerun_adds_no_rows_and_a_changed_result_updates_its_row(
    mysql_engine, mysql_url, spa_session
):
    output_dir, config = spa_session
    ingest(mysql_engine, mysql_url, output_dir, config)
    before = counts(mysql_engine)
    again = ingest(mysql_engine, mysql_url, output_dir, config)
    assert again.units_ingested == 0 and again.units_skipped == UNITS
    (output_dir / "ISPyB" / "ispyb_ids.json").unlink()  # rows found again by natural key
    replay = ingest(mysql_engine, mysql_url, output_dir, config)
    assert replay.units_ingested == UNITS
    assert counts(mysql_engine) == before

    ctf_path = output_dir / "CtfFind" / f"{movie_name(1)}_ctf.json"
    ctf = json.loads(ctf_path.read_text())
    ctf.update(defocus_u_angstrom=22000.0, defocus_v_angstrom=21000.0)
    ctf_path.write_text(json.dumps(ctf))
    summary = ingest(mysql_engine, mysql_url, output_dir, config)
    assert summary.units_ingested == 1
    assert counts(mysql_engine) == before
    with mysql_engine.connect() as c:
        defoci = sorted(c.execute(sa.select(models.CTF.estimatedDefocus)).scalars())
    assert defoci[:3] == pytest.approx([15000.0, 17000.0, 21500.0])  # then the tilts


def _kill_before_insert(engine: sa.Engine, server: sa.Engine, table: str, times: int):
    """Before the first `times` INSERTs into `table`, KILL the connection from another one.
    Returns the killed connection ids (filled as it happens) and the listener."""
    killed: list[int] = []

    def kill(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(f"INSERT INTO `{table}`") and len(killed) < times:
            thread_id = conn.connection.dbapi_connection.thread_id()
            with server.connect() as admin:
                admin.exec_driver_sql(f"KILL {thread_id}")
            killed.append(thread_id)

    sa.event.listen(engine, "before_cursor_execute", kill)
    return killed, kill


def test_killed_connection_exhausts_retries_cleanly_then_is_retried(
    mysql_engine, mysql_url, mysql_server_url, spa_session, caplog
):
    output_dir, config = spa_session
    server = sa.create_engine(mysql_server_url)
    # every attempt of the first movie loses its connection before the CTF row
    _, listener = _kill_before_insert(mysql_engine, server, "CTF", times=100)
    with pytest.raises(RetriesExhaustedError, match="movie .* failed after 4 attempts"):
        ingest(mysql_engine, mysql_url, output_dir, config)
    found = counts(mysql_engine)
    # that unit rolled back whole: no Movie or MotionCorrection without its CTF
    assert found["Movie"] == found["MotionCorrection"] == found["CTF"] == 0
    assert found["DataCollection"] == 1  # the collection unit had committed before
    sa.event.remove(mysql_engine, "before_cursor_execute", listener)

    # now only two kills: the units are re-run and the ingest completes
    killed, _ = _kill_before_insert(mysql_engine, server, "MotionCorrection", times=2)
    with caplog.at_level(logging.WARNING, logger="emproc.ispyb.retry"):
        ingest(mysql_engine, mysql_url, output_dir, config)
    server.dispose()
    assert len(killed) == 2
    assert "transient error" in caplog.text
    found = counts(mysql_engine)
    assert found["Movie"] == found["MotionCorrection"] == found["CTF"] == NUMBER_OF_MOVIES + 5


def test_forced_deadlock_is_retried(mysql_engine, mysql_url, spa_session, caplog):
    output_dir, config = spa_session
    ingest(mysql_engine, mysql_url, output_dir, config)
    with mysql_engine.connect() as c:
        movie_id, ctf_id = c.execute(
            sa.select(models.Movie.movieId, models.CTF.ctfId)
            .join(models.MotionCorrection, models.MotionCorrection.movieId == models.Movie.movieId)
            .join(
                models.CTF,
                models.CTF.motionCorrectionId == models.MotionCorrection.motionCorrectionId,
            )
            .where(models.Movie.movieFullPath.like(f"%{movie_name(0)}.tiff"))
        ).one()
    ctf_path = output_dir / "CtfFind" / f"{movie_name(0)}_ctf.json"
    ctf_path.write_text(ctf_path.read_text().replace("15100.0", "15300.0"))

    # the other transaction holds the CTF row and has changed many rows (so InnoDB picks the
    # ingest as the victim); once the ingest holds the Movie row, it asks for that row too
    other = sa.create_engine(mysql_url).connect()
    other_tx = other.begin()
    other.execute(sa.update(models.ProcessingJobParameter).values(parameterValue="x"))
    other.execute(sa.update(models.CTF).where(models.CTF.ctfId == ctf_id).values(comments="busy"))
    go = threading.Event()
    outcome: list[str] = []

    def crossing_lock():
        go.wait(10)
        other.execute(
            sa.update(models.Movie).where(models.Movie.movieId == movie_id).values(positionX=1.0)
        )
        other_tx.commit()
        outcome.append("committed")

    thread = threading.Thread(target=crossing_lock)
    thread.start()

    @sa.event.listens_for(mysql_engine, "before_cursor_execute")
    def start_crossing(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE `CTF`") and not go.is_set():
            go.set()
            time.sleep(0.5)  # let the other transaction queue on the Movie row

    with caplog.at_level(logging.WARNING, logger="emproc.ispyb.retry"):
        summary = ingest(mysql_engine, mysql_url, output_dir, config)
    thread.join(10)
    other.close()
    assert "MySQL 1213" in caplog.text
    assert outcome == ["committed"] and summary.units_ingested == 1
    with mysql_engine.connect() as c:
        ctf = c.execute(sa.select(models.CTF).where(models.CTF.ctfId == ctf_id)).one()
    assert ctf.estimatedDefocus == pytest.approx(15100.0)  # (15300 + 14900) / 2


def test_missing_visit_is_a_clear_error(mysql_url, spa_session):
    output_dir, config = spa_session
    engine = init_db(mysql_url)  # schema without any visit
    with pytest.raises(VisitNotFoundError, match=f"visit {VISIT} .* does not exist"):
        ingest(engine, mysql_url, output_dir, config)
    assert counts(engine)["DataCollection"] == 0
    engine.dispose()


def _to_previous_structure(engine: sa.Engine, output_dir: Path) -> None:
    """Rewrite a freshly ingested database into what emproc wrote before PATo's recipes: one
    `emproc-spa` / `emproc-tomo` job per collection with a program per stage, no ice, foil
    holes or tilt motion/CTF rows, and an id map of format 1."""
    m = models
    with engine.begin() as c:
        spa_dc, tomo_dc = (
            c.execute(
                sa.select(m.DataCollection.dataCollectionId).order_by(
                    m.DataCollection.dataCollectionId
                )
            )
            .scalars()
            .all()
        )
        tilt_motion = sa.select(m.MotionCorrection.motionCorrectionId).where(
            m.MotionCorrection.dataCollectionId == tomo_dc
        )
        c.execute(
            sa.delete(m.CTF).where(m.CTF.motionCorrectionId.in_(tilt_motion.scalar_subquery()))
        )
        c.execute(
            sa.delete(m.MotionCorrection).where(m.MotionCorrection.dataCollectionId == tomo_dc)
        )
        c.execute(sa.delete(m.RelativeIceThickness))
        c.execute(sa.update(m.Movie).values(foilHoleId=None))
        for table in (m.FoilHole, m.GridSquare, m.Atlas):
            c.execute(sa.delete(table))
        c.execute(sa.update(m.DataCollectionGroup).values(experimentTypeId=None))

        def old_job(dc_id: int, recipe: str, programs: list[str]) -> dict[str, int]:
            job = c.execute(
                sa.insert(m.ProcessingJob).values(
                    dataCollectionId=dc_id, displayName="emproc", recipe=recipe, automatic=1,
                    comments="emproc 0.1.0, parameters 0123456789abcdef",
                )
            ).inserted_primary_key[0]  # fmt: skip
            return {
                p: c.execute(
                    sa.insert(m.AutoProcProgram).values(
                        processingJobId=job, processingPrograms=p, processingStatus=1
                    )
                ).inserted_primary_key[0]
                for p in programs
            }

        spa = old_job(spa_dc, "emproc-spa", ["motion", "ctf", "picking", "class2d"])
        tomo = old_job(tomo_dc, "emproc-tomo", ["tomogram"])
        c.execute(sa.update(m.MotionCorrection).values(autoProcProgramId=spa["motion"]))
        c.execute(sa.update(m.CTF).values(autoProcProgramId=spa["ctf"]))
        c.execute(sa.update(m.ParticlePicker).values(programId=spa["picking"]))
        c.execute(sa.update(m.ParticleClassificationGroup).values(programId=spa["class2d"]))
        c.execute(sa.update(m.Tomogram).values(autoProcProgramId=tomo["tomogram"]))
        c.execute(sa.update(m.AutoProcProgramAttachment).values(autoProcProgramId=spa["motion"]))
        new_programs = (
            sa.select(m.AutoProcProgram.autoProcProgramId)
            .join(m.ProcessingJob)
            .where(m.ProcessingJob.recipe.like("em-%"))
        )
        new_jobs = sa.select(m.ProcessingJob.processingJobId).where(
            m.ProcessingJob.recipe.like("em-%")
        )
        c.execute(
            sa.delete(m.AutoProcProgram).where(
                m.AutoProcProgram.autoProcProgramId.in_(new_programs.scalar_subquery())
            )
        )
        c.execute(
            sa.delete(m.ProcessingJobParameter).where(
                m.ProcessingJobParameter.processingJobId.in_(new_jobs.scalar_subquery())
            )
        )
        c.execute(sa.delete(m.ProcessingJob).where(m.ProcessingJob.recipe.like("em-%")))
    id_map = output_dir / "ISPyB" / "ispyb_ids.json"
    id_map.write_text(json.dumps({**json.loads(id_map.read_text()), "format_version": 1}))


def test_rerun_on_a_database_of_the_previous_structure(mysql_engine, mysql_url, spa_session):
    output_dir, config = spa_session
    ingest(mysql_engine, mysql_url, output_dir, config)
    fresh = counts(mysql_engine)
    _to_previous_structure(mysql_engine, output_dir)
    summary = ingest(mysql_engine, mysql_url, output_dir, config)
    assert summary.units_ingested == UNITS  # the format-1 id map was set aside
    found = counts(mysql_engine)
    # same rows as a fresh ingest: nothing duplicated, the old job and programs are gone
    assert {k: v for k, v in found.items() if k != "ProcessingJobParameter"} == {
        k: v for k, v in fresh.items() if k != "ProcessingJobParameter"
    }
    with mysql_engine.connect() as c:
        recipes = c.execute(sa.select(models.ProcessingJob.recipe)).scalars().all()
        assert sorted(recipes) == [
            "em-spa-class2d", "em-spa-preprocess", "em-tomo-align", "em-tomo-preprocess",
        ]  # fmt: skip
        owners = c.execute(
            sa.select(models.ProcessingJob.recipe, sa.func.count())
            .select_from(models.MotionCorrection)
            .join(models.AutoProcProgram)
            .join(models.ProcessingJob)
            .group_by(models.ProcessingJob.recipe)
        ).all()
        assert dict(owners) == {"em-spa-preprocess": NUMBER_OF_MOVIES, "em-tomo-preprocess": 5}
        assert (
            c.execute(
                sa.select(sa.func.count()).where(
                    models.DataCollectionGroup.experimentTypeId.is_(None)
                )
            ).scalar()
            == 0
        )


def test_changed_config_moves_rows_to_new_jobs_and_retires_the_old(
    mysql_engine, mysql_url, spa_session
):
    output_dir, config = spa_session
    ingest(mysql_engine, mysql_url, output_dir, config)
    before = counts(mysql_engine)
    with mysql_engine.connect() as c:
        old_jobs = set(c.execute(sa.select(models.ProcessingJob.processingJobId)).scalars())
    changed = {**config, "ctf": {**config["ctf"], "box_size_px": 256}}
    summary = ingest(mysql_engine, mysql_url, output_dir, changed)
    assert summary.units_ingested == UNITS  # every unit points at the new programs
    assert counts(mysql_engine) == before  # new jobs replace the old, no empty job is left
    with mysql_engine.connect() as c:
        jobs = set(c.execute(sa.select(models.ProcessingJob.processingJobId)).scalars())
        assert len(jobs) == 4 and not jobs & old_jobs
        value = c.execute(
            sa.select(models.ProcessingJobParameter.parameterValue).where(
                models.ProcessingJobParameter.parameterKey == "ctf.box_size_px"
            )
        ).scalars()
        assert set(value) == {"256"}
