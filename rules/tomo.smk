# Tomography: one job per tilt series (per-tilt motion/CTF run inside it), then the table.

if config["session"]["experiment"] == "tomo":
    # imported here: the tomography modules take seconds to import, every SPA run paid them
    from emproc.tomo.pipeline import ready_tilt_series

    TILT_SERIES_INPUTS = ready_tilt_series(
        SESSION_DIR,
        config["session"]["tomo_mdoc_glob"],
        config["tomo"]["completion_timeout_s"],
    )
else:
    TILT_SERIES_INPUTS = {}
TILT_SERIES = sorted(TILT_SERIES_INPUTS)

TOMO_DIR = out("Tomograms/{tilt_series}/{tilt_series}")
# the denoised tomogram and the images PATo shows of it (emproc.tomo.denoised_tomogram)
DENOISED_OUTPUTS = (
    {
        "denoised": f"{TOMO_DIR}_rec.denoised.mrc",
        "denoised_thumbnail": f"{TOMO_DIR}_rec.denoised_thumbnail.jpeg",
        "denoised_movie": f"{TOMO_DIR}_rec.denoised_movie.png",
    }
    if config["tomo"]["denoise"]["enabled"]
    else {}
)
TOMO_TARGETS = [out("tomograms.csv")] if TILT_SERIES else []


rule process_tilt_series:
    input:
        unpack(tilt_series_inputs),
    output:
        summary=f"{TOMO_DIR}_tomo.json",
        stack=f"{TOMO_DIR}.st",
        rawtlt=f"{TOMO_DIR}.rawtlt",
        tlt=f"{TOMO_DIR}.tlt",
        xf=f"{TOMO_DIR}.xf",
        xtilt=f"{TOMO_DIR}.xtilt",
        aln=f"{TOMO_DIR}.aln",
        tomogram=f"{TOMO_DIR}_rec.mrc",
        xy=f"{TOMO_DIR}_xy.jpg",
        xz=f"{TOMO_DIR}_xz.jpg",
        slab=f"{TOMO_DIR}_slab.jpg",
        residuals=f"{TOMO_DIR}_residuals.png",
        **DENOISED_OUTPUTS,
    params:
        output_dir=lambda wildcards: OUTDIR,
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
        summaries=expand(f"{TOMO_DIR}_tomo.json", tilt_series=TILT_SERIES),
    output:
        table=out("tomograms.csv"),
    log:
        out("logs/tomo/tomograms.log"),
    localrule: True
    conda:
        "../envs/tomo.yaml"
    script:
        "../scripts/tomo_table.py"
