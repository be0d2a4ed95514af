"""The denoised tomogram in a real MariaDB, read the way PATo reads it.

pato-backend (`src/pato/crud/tomograms.py::_get_movie`, movieType "denoised") selects
`ProcessedTomogram.filePath` where tomogramId matches and processingType == "Denoised", then
serves `filePath.replace(".mrc", "_thumbnail.jpeg")` (central slice) and
`.replace(".mrc", "_movie.png")` (movie); the same query and replacement run here against the
rows emproc wrote and the files emproc.tomo.denoised_tomogram wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import ispyb.sqlalchemy as models
import mrcfile
import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from emproc.ispyb.connect import DatabaseTarget
from emproc.ispyb.ingest import ingest_output_dir
from emproc.ispyb.retry import RetryPolicy
from emproc.tomo.denoise import DenoiseParams
from emproc.tomo.denoised_tomogram import write_denoised_tomogram

pytestmark = pytest.mark.mariadb

FAST_RETRY = RetryPolicy(max_attempts=4, initial_delay_s=0.05, max_delay_s=0.2)


def _ingest(engine, url, output_dir, config):
    return ingest_output_dir(
        output_dir,
        config,
        engine=engine,
        target=DatabaseTarget(url, embedded=False),
        policy=FAST_RETRY,
    )


def _pato_denoised_images(engine: sa.Engine, tomogram_id: int) -> dict[str, str]:
    """pato-backend's `_get_movie(tomogramId, "denoised", ...)` for both image types."""
    with engine.connect() as connection:
        base_path = connection.execute(
            sa.select(models.ProcessedTomogram.filePath).filter(
                models.ProcessedTomogram.tomogramId == tomogram_id,
                models.ProcessedTomogram.processingType == "denoised".capitalize(),
            )
        ).scalar()
    assert base_path, "PATo would answer 404: no Denoised ProcessedTomogram"
    return {
        "thumbnail": base_path.replace(".mrc", "_thumbnail.jpeg"),
        "movie": base_path.replace(".mrc", "_movie.png"),
    }


def _denoise_the_fixture_tomogram(output_dir: Path) -> dict:
    """A small real tomogram at the summary's tomogram_path, denoised as the pipeline does,
    the summary updated with the keys the pipeline adds."""
    summary_path = output_dir / "Tomograms" / "Position_1" / "Position_1_tomo.json"
    summary = json.loads(summary_path.read_text())
    rng = np.random.default_rng(0)
    shape = (16, 40, 48)
    signal = rng.normal(size=shape).astype(np.float32)
    even = signal + rng.normal(size=shape).astype(np.float32)
    odd = signal + rng.normal(size=shape).astype(np.float32)
    with mrcfile.new(summary["tomogram_path"], overwrite=True) as mrc:
        mrc.set_data((even + odd) / 2)
        mrc.voxel_size = 8.0
    written = write_denoised_tomogram(
        Path(summary["tomogram_path"]), even, odd, DenoiseParams(), voxel_size_angstrom=8.0
    )
    summary.update(written, denoise_halves="frames")
    summary_path.write_text(json.dumps(summary))
    return summary


def test_denoised_tomogram_rows_and_files_as_pato_reads_them(mysql_engine, mysql_url, spa_session):
    output_dir, config = spa_session
    summary = _denoise_the_fixture_tomogram(output_dir)
    _ingest(mysql_engine, mysql_url, output_dir, config)

    with mysql_engine.connect() as connection:
        tomogram = connection.execute(sa.select(models.Tomogram)).one()
        processed = connection.execute(sa.select(models.ProcessedTomogram)).all()
    assert len(processed) == 1
    row = processed[0]
    assert row.tomogramId == tomogram.tomogramId
    assert row.processingType == "Denoised"
    assert row.feature is None
    assert row.filePath == summary["denoised_tomogram_path"]
    assert Path(row.filePath).name == "Position_1_rec.denoised.mrc"
    assert Path(row.filePath).parent == Path(tomogram.volumeFile).parent  # next to the raw one

    images = _pato_denoised_images(mysql_engine, tomogram.tomogramId)
    assert images["thumbnail"] == summary["denoised_thumbnail_path"]
    assert images["movie"] == summary["denoised_movie_path"]
    with Image.open(images["thumbnail"]) as thumbnail:
        assert thumbnail.format == "JPEG"
        assert thumbnail.size == (48, 40)  # the central z slice, x by y
    with Image.open(images["movie"]) as movie:
        assert movie.format == "PNG"
        assert getattr(movie, "n_frames", 1) == 16  # one frame per z slice (APNG)
    with mrcfile.open(row.filePath) as mrc:
        assert mrc.data.shape == (16, 40, 48)
        assert float(mrc.voxel_size.x) == pytest.approx(8.0)

    # a rerun adds nothing; reprocessing without denoising removes the row
    again = _ingest(mysql_engine, mysql_url, output_dir, config)
    assert again.units_ingested == 0
    summary_path = Path(summary["summary_path"])
    without = {k: v for k, v in summary.items() if not k.startswith(("denoise", "denoised"))}
    summary_path.write_text(json.dumps(without))
    _ingest(mysql_engine, mysql_url, output_dir, config)
    with mysql_engine.connect() as connection:
        assert connection.execute(sa.select(models.ProcessedTomogram)).all() == []
