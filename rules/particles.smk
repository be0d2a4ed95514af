# SPA particles: picking and extraction per movie, aggregates, batched 2D classification.
# Included after rules/spa.smk (needs OUTDIR, MOVIES, IMPORT_JSON, CTF_JSON, resources_of).

import json

PICKS_STAR = out("Picking/{movie}.star")
PICKS_JSON = out("Picking/{movie}_picks.json")
EXTRACT_JSON = out("Extract/{movie}_extract.json")
EXTRACT_STAR = out("Extract/{movie}.star")


rule pick_particles:
    input:
        micrograph=out("MotionCorr/{movie}_DW.mrc"),
    output:
        star=PICKS_STAR,
        summary=PICKS_JSON,
        snapshot=out("Picking/{movie}_picks.jpg"),
    params:
        picking=config["picking"],
    threads: resources_of("pick_particles")["threads"]
    resources:
        mem_mb=resources_of("pick_particles")["mem_mb"],
        runtime=resources_of("pick_particles")["runtime"],
    log:
        out("logs/picking/{movie}.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/pick_particles.py"


rule extract_particles:
    input:
        micrograph=out("MotionCorr/{movie}_DW.mrc"),
        coordinates=PICKS_STAR,
        ctf=CTF_JSON,
        metadata=IMPORT_JSON,
    output:
        stack=out("Extract/{movie}.mrcs"),
        star=EXTRACT_STAR,
        summary=EXTRACT_JSON,
    params:
        extraction=config["extraction"],
        project_dir=lambda wildcards: OUTDIR,
    threads: resources_of("extract_particles")["threads"]
    resources:
        mem_mb=resources_of("extract_particles")["mem_mb"],
        runtime=resources_of("extract_particles")["runtime"],
    log:
        out("logs/extract/{movie}.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/extract_particles.py"


rule aggregate_particles:
    input:
        particle_stars=expand(EXTRACT_STAR, movie=MOVIES),
        pick_summaries=expand(PICKS_JSON, movie=MOVIES),
    output:
        particles=out("particles.star"),
        coordinates=out("Picking/coordinates.csv"),
    localrule: True
    log:
        out("logs/aggregate_particles.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/aggregate_particles.py"


# The manifest is a checkpoint: how many batch jobs exist is known only once it is written.
# Its history file (not an output: Snakemake deletes outputs before rerunning a job) keeps
# full batches frozen as movies accumulate.
checkpoint class2d_batches:
    input:
        summaries=expand(EXTRACT_JSON, movie=MOVIES),
    output:
        manifest=out("Class2D/batches.json"),
    params:
        batch_size=config["class2d"].get("batch_size", 5000),
        history=out("Class2D/batches_history.json"),
    localrule: True
    log:
        out("logs/class2d/batches.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/class2d_batches.py"


rule class2d_batch:
    input:
        unpack(class2d_batch_inputs),
    output:
        averages=out("Class2D/batch_{batch}/class_averages.mrcs"),
        model=out("Class2D/batch_{batch}/model.star"),
        particles=out("Class2D/batch_{batch}/particles.star"),
        selected=out("Class2D/batch_{batch}/particles_selected.star"),
        gallery=out("Class2D/batch_{batch}/classes.png"),
        class_images=directory(out("Class2D/batch_{batch}/class_images")),
        summary=out("Class2D/batch_{batch}/summary.json"),
    params:
        members=class2d_batch_members,
        class2d=config["class2d"],
        phase_flipped=config["extraction"].get("phase_flip", False),
        project_dir=lambda wildcards: OUTDIR,
    wildcard_constraints:
        batch=r"\d+",
    threads: resources_of("class2d_batch")["threads"]
    resources:
        mem_mb=resources_of("class2d_batch")["mem_mb"],
        runtime=resources_of("class2d_batch")["runtime"],
    log:
        out("logs/class2d/batch_{batch}.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/class2d_batch.py"


rule class2d_index:
    input:
        summaries=class2d_summaries,
    output:
        index=out("Class2D/class2d_batches.json"),
    localrule: True
    log:
        out("logs/class2d/index.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/class2d_index.py"


PARTICLE_TARGETS = (
    [
        rules.aggregate_particles.output.particles,
        rules.aggregate_particles.output.coordinates,
        rules.class2d_index.output.index,
    ]
    if MOVIES
    else []
)
