# Single-particle stages: one job per movie, aggregates over all movies.


rule import_movie:
    input:
        movie=movie_file,
        epu_xml=epu_metadata_file,
    output:
        metadata=IMPORT_JSON,
    params:
        session_dir=SESSION_DIR,
        microscope=config["microscope"],
        failure_record=failure_record("import"),
    threads: resources_of("import_movie")["threads"]
    resources:
        mem_mb=resources_of("import_movie")["mem_mb"],
        runtime=resources_of("import_movie")["runtime"],
    log:
        out("logs/import/{movie}.log"),
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/import_movie.py"


rule motion_correct:
    input:
        movie=movie_file,
        metadata=IMPORT_JSON,
        **DETECTOR_FILES,
    output:
        micrograph=out("MotionCorr/{movie}.mrc"),
        micrograph_dw=out("MotionCorr/{movie}_DW.mrc"),
        shifts_star=out("MotionCorr/{movie}.star"),
        shifts_csv=out("MotionCorr/{movie}_shifts.csv"),
        summary=MOTION_JSON,
        snapshot=out("MotionCorr/{movie}.jpg"),
        drift_plot=out("MotionCorr/{movie}_drift.png"),
    params:
        motion=config["motion"],
        failure_record=failure_record("motion"),
    threads: resources_of("motion_correct")["threads"]
    resources:
        mem_mb=resources_of("motion_correct")["mem_mb"],
        runtime=resources_of("motion_correct")["runtime"],
    log:
        out("logs/motion/{movie}.log"),
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/motion_correct.py"


rule ctf_estimate:
    input:
        micrograph=out("MotionCorr/{movie}.mrc"),
        metadata=IMPORT_JSON,
    output:
        ctffind_txt=out("CtfFind/{movie}.txt"),
        summary=CTF_JSON,
        diagnostic=out("CtfFind/{movie}_ctf.png"),
    params:
        ctf=config["ctf"],
        failure_record=failure_record("ctf"),
    threads: resources_of("ctf_estimate")["threads"]
    resources:
        mem_mb=resources_of("ctf_estimate")["mem_mb"],
        runtime=resources_of("ctf_estimate")["runtime"],
    log:
        out("logs/ctf/{movie}.log"),
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/ctf_estimate.py"


rule corrected_micrographs_star:
    input:
        summaries=expand(MOTION_JSON, movie=MOVIES),
        metadata=expand(IMPORT_JSON, movie=MOVIES),
    output:
        star=out("corrected_micrographs.star"),
    log:
        out("logs/corrected_micrographs.log"),
    localrule: True
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/aggregate_motion.py"


rule micrographs_ctf_star:
    input:
        summaries=expand(CTF_JSON, movie=MOVIES),
        motion_summaries=expand(MOTION_JSON, movie=MOVIES),
        metadata=expand(IMPORT_JSON, movie=MOVIES),
    output:
        star=out("micrographs_ctf.star"),
    log:
        out("logs/micrographs_ctf.log"),
    localrule: True
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/aggregate_ctf.py"


SPA_TARGETS = (
    [rules.corrected_micrographs_star.output.star, rules.micrographs_ctf_star.output.star]
    if MOVIES
    else []
)
