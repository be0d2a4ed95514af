# Configuration, discovery and resources shared by every rules file.

import json
import sys

from emproc.config import ConfigError, validate_config
from emproc.discovery import DiscoveryError, discover_movies
from emproc.chunks import CHUNK_PATTERN, assign_chunks, read_ledger
from emproc.resources import rule_resources


def _fail(message):
    # One line for the user, not a traceback: Snakemake shows exceptions raised here in full.
    print(f"emproc: error: {message}", file=sys.stderr)
    sys.exit(1)


if not config:
    _fail("no configuration: pass --configfile FILE (config/config.yaml is an example to copy)")
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

# The per-movie stages run per chunk of movies (emproc.chunks): a few thousand jobs plan in
# seconds where one job per movie and stage took minutes for 20,000 movies. Chunks with an
# import manifest keep their members; new movies form new chunks.
CHUNKS = assign_chunks(
    MOVIE_PATHS, read_ledger(OUTDIR), int(config["processing"]["movies_per_job"])
)


def out(path):
    """`path` under the output directory (outputs.dir)."""
    return f"{OUTDIR}/{path}"


def chunk_manifest(stage):
    return out(f"Chunks/{{chunk}}/{stage}.json")


def chunk_manifests(stage):
    return [out(f"Chunks/{chunk}/{stage}.json") for chunk in CHUNKS]


def chunk_members(wildcards):
    return CHUNKS[wildcards.chunk]


def chunk_movie_files(wildcards):
    # in member order: scripts/movie_stage.py pairs them with params.members
    return [str(MOVIE_PATHS[movie]) for movie in CHUNKS[wildcards.chunk]]


def _epu_xml(movie):
    from emproc.io.epu import EpuNameError, epu_metadata_path

    try:
        xml = epu_metadata_path(MOVIE_PATHS[movie])
    except EpuNameError:
        return None
    return str(xml) if xml.is_file() else None


def chunk_epu_members(wildcards):
    """The chunk's movies that have an EPU XML (movies not named by EPU have none)."""
    return [movie for movie in CHUNKS[wildcards.chunk] if _epu_xml(movie)]


def chunk_epu_files(wildcards):
    # in the order of chunk_epu_members: scripts/movie_stage.py pairs them
    xmls = (_epu_xml(movie) for movie in CHUNKS[wildcards.chunk])
    return [xml for xml in xmls if xml]


# Detector references every movie needs: inputs, so remote storage stages them too
DETECTOR_FILES = {
    role: config["microscope"][key]
    for role, key in (("gain", "gain_reference"), ("defects", "defect_map"))
    if config["microscope"][key]
}


wildcard_constraints:
    chunk=CHUNK_PATTERN,


def resources_of(rule_name):
    return rule_resources(config["resources"], rule_name)


def chunk_runtime(rule_name):
    """Minutes for a chunk: the rule's per-movie runtime times the movies in a chunk."""
    return resources_of(rule_name)["runtime"] * int(config["processing"]["movies_per_job"])


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
        "stars": [out(f"Extract/{movie}.star") for movie in movies],
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


# ISPyB (rules/ispyb.smk)


def ispyb_database_identity():
    # Which database and visit ingest writes to, hashed (never the password): its marker is
    # an output, so another database (new credentials, also for a copied output
    # directory; another embedded_url) is a missing output and ingest runs again. Unreadable credentials fail in the job itself,
    # with one line naming the file.
    from emproc.ispyb.connect import CredentialsError, database_identity

    try:
        return database_identity(config["ispyb"], OUTDIR, config["session"]["visit"])
    except CredentialsError:
        return "unreadable-credentials"


# The report (rules/report.smk) follows every aggregate


def report_inputs(wildcards):
    # a function: evaluated once every rules file has defined its targets
    return [*SPA_TARGETS, *PARTICLE_TARGETS, *SPA3D_TARGETS, *TOMO_TARGETS, *ISPYB_TARGETS]
