"""em-spa-class3d and em-spa-refine on a real MariaDB, from the summaries of one real run of
the spa3d steps (tests/ispyb/data/spa3d, recorded once: the 3D workflow takes minutes), read
back with the queries of PATo's 3D classification, refinement and B-factor panels
(pato-backend `crud/autoproc.py`: get_classification with classType 3d, get_b_factor_fit).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import ispyb.sqlalchemy as models
import numpy as np
import pytest
import sqlalchemy as sa
import sqlalchemy.orm
from ispyb_fixtures import write_spa3d_outputs
from test_ispyb_ingest_mariadb import COUNTED, counts, ingest

from emproc.ispyb.ingest import ingest_output_dir

LINK = models.t_ParticleClassification_has_CryoemInitialModel
COUNTED_3D = (
    *COUNTED,
    "CryoemInitialModel",
    "ParticleClassification_has_CryoemInitialModel",
    "BFactorFit",
)


def counts_3d(engine: sa.Engine) -> dict[str, int]:
    return counts(engine, COUNTED_3D)


def program(connection: sa.Connection, recipe: str) -> int:
    return connection.execute(
        sa.select(models.AutoProcProgram.autoProcProgramId)
        .join(models.ProcessingJob)
        .where(models.ProcessingJob.recipe == recipe)
    ).scalar_one()


def classification(connection: sa.Connection, program_id: int, class_type: str) -> list[sa.Row]:
    """crud/autoproc.get_classification: groups of the program and type, their classes, each
    outer-joined to its initial model (through an ORM session, entities as objects, as
    pato-backend runs it)."""
    query = (
        sa.select(
            models.ParticleClassificationGroup.numberOfParticlesPerBatch,
            models.ParticleClassificationGroup.numberOfClassesPerBatch,
            models.ParticleClassificationGroup.binnedPixelSize,
            models.ParticleClassification,
            models.CryoemInitialModel.cryoemInitialModelId,
            models.CryoemInitialModel.resolution.label("modelResolution"),
            models.CryoemInitialModel.numberOfParticles.label("modelParticles"),
        )
        .select_from(models.ParticleClassificationGroup)
        .where(
            models.ParticleClassificationGroup.programId == program_id,
            models.ParticleClassificationGroup.type == class_type.upper(),
        )
        .join(models.ParticleClassification, isouter=True)
        .join(LINK, isouter=True)
        .join(models.CryoemInitialModel, isouter=True)
        .order_by(models.ParticleClassification.classNumber)
    )
    with sa.orm.Session(bind=connection) as session:
        return session.execute(query).all()


def b_factor_fit(connection: sa.Connection, program_id: int) -> list[sa.Row]:
    """crud/autoproc.get_b_factor_fit: ln N and 1/d^2 of the program's fits (MariaDB's ln)."""
    return connection.execute(
        sa.select(
            sa.func.ln(models.BFactorFit.numberOfParticles).label("numberOfParticles"),
            (1 / sa.func.pow(models.BFactorFit.resolution, 2)).label("resolution"),
        )
        .select_from(models.ParticleClassificationGroup)
        .where(models.ParticleClassificationGroup.programId == program_id)
        .join(models.ParticleClassification)
        .join(models.BFactorFit)
    ).all()


@pytest.mark.mariadb
def test_3d_classes_refinement_and_bfactor_as_pato_reads_them(mysql_engine, mysql_url, spa_session):
    output_dir, config = spa_session
    steps = write_spa3d_outputs(output_dir)
    ingest(mysql_engine, mysql_url, output_dir, config)
    class3d, initial_model = steps["Class3D"], steps["InitialModel"]
    post, refine, bfactor = steps["PostProcess"], steps["Refine3D"], steps["BFactor"]
    with mysql_engine.connect() as c:
        recipes = c.execute(sa.select(models.ProcessingJob.recipe)).scalars().all()
        assert {"em-spa-class3d", "em-spa-refine"} <= set(recipes)
        class3d_program, refine_program = program(c, "em-spa-class3d"), program(c, "em-spa-refine")
        # 3D classification panel: one group, K classes, each with the initial model
        classes = classification(c, class3d_program, "3d")
        assert len(classes) == class3d["number_of_classes"] == len(class3d["classes"])
        assert {r.numberOfParticlesPerBatch for r in classes} == {class3d["number_of_particles"]}
        assert {r.numberOfClassesPerBatch for r in classes} == {class3d["number_of_classes"]}
        for row, expected in zip(classes, class3d["classes"], strict=True):
            klass = row.ParticleClassification
            assert klass.classNumber == expected["class_number"]
            assert klass.classImageFullPath == expected["class_map_path"]
            assert Path(klass.classImageFullPath).parent == output_dir / "Class3D"
            assert klass.particlesPerClass == expected["particles_per_class"]
            assert klass.classDistribution == pytest.approx(
                expected["class_distribution"], rel=1e-5
            )
            assert klass.estimatedResolution == pytest.approx(
                expected["estimated_resolution_angstrom"], rel=1e-5
            )
            assert bool(klass.selected) == (klass.classNumber == class3d["best_class"])
            assert row.modelResolution == pytest.approx(
                initial_model["resolution_angstrom"], rel=1e-5
            )
            assert row.modelParticles == initial_model["number_of_particles"]
        assert len({r.cryoemInitialModelId for r in classes}) == 1
        # particles of the classes add up to the batch (RELION's class of each particle)
        assert (
            sum(r.ParticleClassification.particlesPerClass for r in classes)
            == (class3d["number_of_particles"])
        )
        assert classification(c, class3d_program, "2d") == []  # the 2D panel stays 2D
        # refinement panel: the post-processed map with its resolution and fit line
        (refined,) = classification(c, refine_program, "3d")
        klass = refined.ParticleClassification
        assert refined.cryoemInitialModelId is None
        assert klass.classImageFullPath == post["masked_map_path"]
        assert klass.estimatedResolution == pytest.approx(post["resolution_angstrom"], rel=1e-5)
        assert (
            klass.particlesPerClass == post["number_of_particles"] == refine["number_of_particles"]
        )
        assert klass.rotationAccuracy == pytest.approx(refine["rotation_accuracy_deg"], rel=1e-5)
        assert klass.selected == 1
        # B-factor plot: the points PATo draws lie on the line stored on the class
        points = b_factor_fit(c, refine_program)
        assert len(points) == len(bfactor["subsets"]) >= 2
        ln_n = np.array([float(p.numberOfParticles) for p in points])
        inverse_d2 = np.array([float(p.resolution) for p in points])
        assert sorted(np.exp(ln_n).round()) == sorted(
            s["number_of_particles"] for s in bfactor["subsets"]
        )
        slope, intercept = np.polyfit(ln_n, inverse_d2, 1)
        assert klass.bFactorFitLinear == pytest.approx(slope, rel=1e-3)
        assert klass.bFactorFitIntercept == pytest.approx(intercept, rel=1e-3, abs=1e-7)
        rosenthal_henderson = bfactor["bfactor_rosenthal_henderson_angstrom2"]
        assert 2 / klass.bFactorFitLinear == pytest.approx(rosenthal_henderson, rel=1e-3)
        assert math.isfinite(rosenthal_henderson) and rosenthal_henderson > 0


@pytest.mark.mariadb
def test_3d_rerun_adds_no_rows_and_a_smaller_rerun_drops_its_leftovers(
    mysql_engine, mysql_url, spa_session
):
    output_dir, config = spa_session
    write_spa3d_outputs(output_dir)
    ingest(mysql_engine, mysql_url, output_dir, config)
    before = counts_3d(mysql_engine)
    assert before["CryoemInitialModel"] == 1 and before["BFactorFit"] >= 2
    again = ingest(mysql_engine, mysql_url, output_dir, config)
    assert again.units_ingested == 0
    (output_dir / "ISPyB" / "ispyb_ids.json").unlink()  # rows found again by natural key
    ingest(mysql_engine, mysql_url, output_dir, config)
    assert counts_3d(mysql_engine) == before

    # a changed config: new jobs; the 3D groups (with their classes, initial model and fits)
    # move to the new programs and the old jobs are deleted, no row added or lost
    with mysql_engine.connect() as c:
        old_programs = {program(c, "em-spa-class3d"), program(c, "em-spa-refine")}
    config = {**config, "ctf": {**config["ctf"], "box_size_px": 256}}
    ingest(mysql_engine, mysql_url, output_dir, config)
    assert counts_3d(mysql_engine) == before
    with mysql_engine.connect() as c:
        new_programs = {program(c, "em-spa-class3d"), program(c, "em-spa-refine")}
        assert not new_programs & old_programs
        groups = c.execute(sa.select(models.ParticleClassificationGroup.programId)).scalars()
        assert new_programs <= set(groups)

    # a rerun of the 3D steps with one class fewer and one subset fewer
    class3d_path = output_dir / "Class3D" / "summary.json"
    class3d = json.loads(class3d_path.read_text())
    class3d["classes"] = class3d["classes"][:-1]
    class3d["number_of_classes"] -= 1
    class3d_path.write_text(json.dumps(class3d))
    bfactor_path = output_dir / "BFactor" / "summary.json"
    bfactor = json.loads(bfactor_path.read_text())
    bfactor["subsets"] = bfactor["subsets"][1:]
    bfactor_path.write_text(json.dumps(bfactor))
    summary = ingest(mysql_engine, mysql_url, output_dir, config)
    assert summary.units_ingested == 2  # the class3d and refine units only
    after = counts_3d(mysql_engine)
    classes_3d = before["ParticleClassification"] - 1
    assert after == {
        **before,
        "ParticleClassification": classes_3d,
        "ParticleClassification_has_CryoemInitialModel": before[
            "ParticleClassification_has_CryoemInitialModel"
        ]
        - 1,
        "BFactorFit": before["BFactorFit"] - 1,
    }


def test_3d_rows_in_the_embedded_database(spa_session, monkeypatch):
    # the default target (SQLite, emproc.ispyb.schema's adaptation): same rows, rerun idempotent
    monkeypatch.delenv("ISPYB_CREDENTIALS", raising=False)
    output_dir, config = spa_session
    steps = write_spa3d_outputs(output_dir)
    ingest_output_dir(output_dir, config)
    engine = sa.create_engine(f"sqlite:///{output_dir / 'ispyb.sqlite'}")
    try:
        first = counts_3d(engine)
        (output_dir / "ISPyB" / "ispyb_ids.json").unlink()
        ingest_output_dir(output_dir, config)
        assert counts_3d(engine) == first
        classes = len(steps["Class3D"]["classes"])
        assert first["ParticleClassification_has_CryoemInitialModel"] == classes
        assert first["BFactorFit"] == len(steps["BFactor"]["subsets"])
        with engine.connect() as c:
            refined = classification(c, program(c, "em-spa-refine"), "3d")
            assert [r.ParticleClassification.estimatedResolution for r in refined] == (
                pytest.approx([steps["PostProcess"]["resolution_angstrom"]])
            )
    finally:
        engine.dispose()
