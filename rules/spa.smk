# Single-particle stages: one job per movie, aggregates over all movies.


def movie_file(wildcards):
    return str(MOVIE_PATHS[wildcards.movie])


rule import_movie:
    input:
        movie=movie_file,
    output:
        metadata=IMPORT_JSON,
    params:
        session_dir=SESSION_DIR,
        microscope=config["microscope"],
    threads: resources_of("import_movie")["threads"]
    resources:
        mem_mb=resources_of("import_movie")["mem_mb"],
        runtime=resources_of("import_movie")["runtime"],
    log:
        OUTDIR + "/logs/import/{movie}.log",
    script:
        "../scripts/import_movie.py"


rule motion_correct:
    input:
        movie=movie_file,
        metadata=IMPORT_JSON,
    output:
        micrograph=OUTDIR + "/MotionCorr/{movie}.mrc",
        micrograph_dw=OUTDIR + "/MotionCorr/{movie}_DW.mrc",
        shifts_star=OUTDIR + "/MotionCorr/{movie}.star",
        shifts_csv=OUTDIR + "/MotionCorr/{movie}_shifts.csv",
        summary=MOTION_JSON,
        snapshot=OUTDIR + "/MotionCorr/{movie}.jpg",
        drift_plot=OUTDIR + "/MotionCorr/{movie}_drift.png",
    params:
        motion=config["motion"],
    threads: resources_of("motion_correct")["threads"]
    resources:
        mem_mb=resources_of("motion_correct")["mem_mb"],
        runtime=resources_of("motion_correct")["runtime"],
    log:
        OUTDIR + "/logs/motion/{movie}.log",
    script:
        "../scripts/motion_correct.py"


rule ctf_estimate:
    input:
        micrograph=OUTDIR + "/MotionCorr/{movie}.mrc",
        metadata=IMPORT_JSON,
    output:
        ctffind_txt=OUTDIR + "/CtfFind/{movie}.txt",
        summary=CTF_JSON,
        diagnostic=OUTDIR + "/CtfFind/{movie}_ctf.png",
    params:
        ctf=config["ctf"],
    threads: resources_of("ctf_estimate")["threads"]
    resources:
        mem_mb=resources_of("ctf_estimate")["mem_mb"],
        runtime=resources_of("ctf_estimate")["runtime"],
    log:
        OUTDIR + "/logs/ctf/{movie}.log",
    script:
        "../scripts/ctf_estimate.py"


rule corrected_micrographs_star:
    input:
        summaries=expand(MOTION_JSON, movie=MOVIES),
        metadata=expand(IMPORT_JSON, movie=MOVIES),
    output:
        star=OUTDIR + "/corrected_micrographs.star",
    localrule: True
    script:
        "../scripts/aggregate_motion.py"


rule micrographs_ctf_star:
    input:
        summaries=expand(CTF_JSON, movie=MOVIES),
        motion_summaries=expand(MOTION_JSON, movie=MOVIES),
        metadata=expand(IMPORT_JSON, movie=MOVIES),
    output:
        star=OUTDIR + "/micrographs_ctf.star",
    localrule: True
    script:
        "../scripts/aggregate_ctf.py"


SPA_TARGETS = (
    [rules.corrected_micrographs_star.output.star, rules.micrographs_ctf_star.output.star]
    if MOVIES
    else []
)
