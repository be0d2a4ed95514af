# Configuration, discovery and resources shared by every rules file.

import json
import sys

from emproc.config import ConfigError, validate_config
from emproc.discovery import DiscoveryError, discover_movies
from emproc.failures import failure_records
from emproc.resources import rule_resources


def _fail(message):
    # One line for the user, not a traceback: Snakemake shows exceptions raised here in full.
    print(f"emproc: error: {message}", file=sys.stderr)
    sys.exit(1)


try:
    config = validate_config(config)
except ConfigError as error:
    _fail(error)

OUTDIR = config["outputs"]["dir"].rstrip("/")
SESSION_DIR = config["session"]["session_dir"]

if config["session"]["experiment"] == "spa":
    try:
        MOVIE_PATHS = discover_movies(
            SESSION_DIR,
            config["session"]["movie_glob"],
            movie_list=config["session"]["movie_list"],
        )
    except DiscoveryError as error:
        _fail(error)
else:
    MOVIE_PATHS = {}
# Movies whose processing failed before are left out of the aggregates, so one bad movie
# never blocks the session's tables and ingest (emproc.failures; `emproc run --retry-failed`).
FAILED_MOVIES = failure_records(OUTDIR)
MOVIES = [movie for movie in MOVIE_PATHS if movie not in FAILED_MOVIES]



def out(path):
    """`path` under the output directory (outputs.dir)."""
    return f"{OUTDIR}/{path}"


def failure_record(stage):
    return out(f"failures/{stage}/{{movie}}.json")


def movie_file(wildcards):
    return str(MOVIE_PATHS[wildcards.movie])


def epu_metadata_file(wildcards):
    """The movie's EPU XML when there is one (movies not named by EPU have none)."""
    from emproc.io.epu import EpuNameError, epu_metadata_path

    try:
        xml = epu_metadata_path(MOVIE_PATHS[wildcards.movie])
    except EpuNameError:
        return []
    return [str(xml)] if xml.is_file() else []


# Detector references every movie needs: inputs, so remote storage stages them too
DETECTOR_FILES = {
    role: config["microscope"][key]
    for role, key in (("gain", "gain_reference"), ("defects", "defect_map"))
    if config["microscope"][key]
}


IMPORT_JSON = out("Import/{movie}.json")
MOTION_JSON = out("MotionCorr/{movie}_motion.json")
CTF_JSON = out("CtfFind/{movie}_ctf.json")


wildcard_constraints:
    # `{movie}_DW.mrc` must not be read as a movie called "..._DW"
    movie=r".+(?<!_DW)",


def resources_of(rule_name):
    return rule_resources(config["resources"], rule_name)


# 2D classification batches (rules/particles.smk): read the checkpoint's manifest.


def _class2d_batch(wildcards):
    with open(checkpoints.class2d_batches.get().output.manifest) as handle:
        manifest = json.load(handle)
    for batch in manifest["batches"]:
        if int(batch["batch_number"]) == int(wildcards.batch):
            return batch
    raise ValueError(f"batch {wildcards.batch} is not in the class2d manifest")


def class2d_batch_inputs(wildcards):
    # the per-movie particle files of this batch only: a full batch's inputs never change
    movies = [member["movie_name"] for member in _class2d_batch(wildcards)["members"]]
    return {
        "stars": [EXTRACT_STAR.format(movie=movie) for movie in movies],
        "stacks": [out(f"Extract/{movie}.mrcs") for movie in movies],
    }


def class2d_batch_members(wildcards):
    # as params: a grown partial batch has new members, so Snakemake reruns it
    return _class2d_batch(wildcards)["members"]


def class2d_summaries(wildcards):
    from emproc.classify.batches import batches_to_classify

    with open(checkpoints.class2d_batches.get().output.manifest) as handle:
        manifest = json.load(handle)
    numbers = batches_to_classify(
        manifest, bool(config["class2d"].get("classify_partial_batch", False))
    )
    return [out(f"Class2D/batch_{number}/summary.json") for number in numbers]


# Tilt series (rules/tomo.smk)


def tilt_series_inputs(wildcards):
    entry = TILT_SERIES_INPUTS[wildcards.tilt_series]
    return {"mdoc": entry["mdoc"], "movies": entry["movies"]}


# The report (rules/report.smk) follows every aggregate


def report_inputs(wildcards):
    # a function: evaluated once every rules file has defined its targets
    return [*SPA_TARGETS, *PARTICLE_TARGETS, *TOMO_TARGETS, *ISPYB_TARGETS]
