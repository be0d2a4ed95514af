# Configuration, discovery and resources shared by every rules file.

import sys

from emproc.config import ConfigError, validate_config
from emproc.discovery import DiscoveryError, discover_movies
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
        MOVIE_PATHS = discover_movies(SESSION_DIR, config["session"]["movie_glob"])
    except DiscoveryError as error:
        _fail(error)
else:
    MOVIE_PATHS = {}
MOVIES = list(MOVIE_PATHS)



def out(path):
    """`path` under the output directory (outputs.dir)."""
    return f"{OUTDIR}/{path}"


def movie_file(wildcards):
    return str(MOVIE_PATHS[wildcards.movie])


IMPORT_JSON = out("Import/{movie}.json")
MOTION_JSON = out("MotionCorr/{movie}_motion.json")
CTF_JSON = out("CtfFind/{movie}_ctf.json")


wildcard_constraints:
    # `{movie}_DW.mrc` must not be read as a movie called "..._DW"
    movie=r".+(?<!_DW)",


def resources_of(rule_name):
    return rule_resources(config["resources"], rule_name)
