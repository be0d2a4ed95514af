# Single-particle stages: one job per chunk of movies and stage (emproc.chunks). Each job
# writes Chunks/<chunk>/<stage>.json naming the movies that succeeded and those that failed;
# the per-movie files (Import/, MotionCorr/, CtfFind/) are where docs/architecture.md says.


rule import_movies:
    input:
        movies=chunk_movie_files,
        epu_xml=chunk_epu_files,
    output:
        manifest=chunk_manifest("import"),
    params:
        stage="import",
        members=chunk_members,
        epu_members=chunk_epu_members,
        session_dir=SESSION_DIR,
        microscope=config["microscope"],
    threads: resources_of("import_movies")["threads"]
    resources:
        mem_mb=resources_of("import_movies")["mem_mb"],
        runtime=chunk_runtime("import_movies"),
    log:
        out("logs/chunks/{chunk}/import.log"),
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/movie_stage.py"


rule motion_correct:
    input:
        # the movies are the import job's inputs: a changed movie reruns import, then this;
        # motion reads each movie from its Import JSON (Snakemake's scheduler stats every
        # input of every ready job on each round, so the movies are not listed twice)
        upstream=[chunk_manifest("import")],
        **DETECTOR_FILES,
    output:
        manifest=chunk_manifest("motion"),
    params:
        stage="motion",
        motion=config["motion"],
    threads: resources_of("motion_correct")["threads"]
    resources:
        mem_mb=resources_of("motion_correct")["mem_mb"],
        runtime=chunk_runtime("motion_correct"),
    log:
        out("logs/chunks/{chunk}/motion.log"),
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/movie_stage.py"


rule ctf_estimate:
    input:
        upstream=[chunk_manifest("motion")],
    output:
        manifest=chunk_manifest("ctf"),
    params:
        stage="ctf",
        ctf=config["ctf"],
    threads: resources_of("ctf_estimate")["threads"]
    resources:
        mem_mb=resources_of("ctf_estimate")["mem_mb"],
        runtime=chunk_runtime("ctf_estimate"),
    log:
        out("logs/chunks/{chunk}/ctf.log"),
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/movie_stage.py"


rule corrected_micrographs_star:
    input:
        manifests=chunk_manifests("motion"),
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
        manifests=chunk_manifests("ctf"),
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
    if CHUNKS
    else []
)
