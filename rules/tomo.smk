# Tomography: one job per tilt series (per-tilt motion/CTF run inside it), then the table.

from emproc.tomo.pipeline import ready_tilt_series

if config["session"]["experiment"] == "tomo":
    TILT_SERIES_INPUTS = ready_tilt_series(
        SESSION_DIR,
        config["session"]["tomo_mdoc_glob"],
        config["tomo"]["completion_timeout_s"],
    )
else:
    TILT_SERIES_INPUTS = {}
TILT_SERIES = sorted(TILT_SERIES_INPUTS)

TOMO_DIR = out("Tomograms/{tilt_series}/{tilt_series}")
TOMO_TARGETS = [out("tomograms.csv")] if TILT_SERIES else []


def tilt_series_inputs(wildcards):
    entry = TILT_SERIES_INPUTS[wildcards.tilt_series]
    return {"mdoc": entry["mdoc"], "movies": entry["movies"]}


rule process_tilt_series:
    input:
        unpack(tilt_series_inputs),
    output:
        summary=TOMO_DIR + "_tomo.json",
        stack=TOMO_DIR + ".st",
        rawtlt=TOMO_DIR + ".rawtlt",
        tlt=TOMO_DIR + ".tlt",
        xf=TOMO_DIR + ".xf",
        aln=TOMO_DIR + ".aln",
        tomogram=TOMO_DIR + "_rec.mrc",
        xy=TOMO_DIR + "_xy.jpg",
        xz=TOMO_DIR + "_xz.jpg",
        slab=TOMO_DIR + "_slab.jpg",
        residuals=TOMO_DIR + "_residuals.png",
    params:
        output_dir=OUTDIR,
        tomo=config["tomo"],
        microscope=config["microscope"],
        motion=config["motion"],
        ctf=config["ctf"],
    threads: resources_of("process_tilt_series")["threads"]
    resources:
        mem_mb=resources_of("process_tilt_series")["mem_mb"],
        runtime=resources_of("process_tilt_series")["runtime"],
    log:
        out("logs/tomo/{tilt_series}.log"),
    conda:
        "../envs/tomo.yaml"
    script:
        "../scripts/tomo_process_tilt_series.py"


rule tomogram_table:
    input:
        summaries=expand(TOMO_DIR + "_tomo.json", tilt_series=TILT_SERIES),
    output:
        table=out("tomograms.csv"),
    log:
        out("logs/tomo/tomograms.log"),
    localrule: True
    conda:
        "../envs/tomo.yaml"
    script:
        "../scripts/tomo_table.py"
