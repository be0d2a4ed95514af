# SPA particles: picking and extraction per chunk of movies (emproc.chunks), aggregates,
# batched 2D classification. Included after rules/spa.smk.


rule pick_particles:
    input:
        # with picking.ctf_filter the CTF estimate feeds the picker: then picking waits for
        # it and reruns when it changes; otherwise it needs the motion-corrected sums only
        upstream=[chunk_manifest("motion")]
        + ([chunk_manifest("ctf")] if config["picking"].get("ctf_filter", False) else []),
    output:
        manifest=chunk_manifest("pick"),
    params:
        stage="pick",
        picking=config["picking"],
    threads: resources_of("pick_particles")["threads"]
    resources:
        mem_mb=resources_of("pick_particles")["mem_mb"],
        runtime=chunk_runtime("pick_particles"),
    log:
        out("logs/chunks/{chunk}/pick.log"),
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/movie_stage.py"


rule extract_particles:
    input:
        # movies that succeeded in both picking and CTF estimation
        upstream=[chunk_manifest("pick"), chunk_manifest("ctf")],
    output:
        manifest=chunk_manifest("extract"),
    params:
        stage="extract",
        extraction=config["extraction"],
    threads: resources_of("extract_particles")["threads"]
    resources:
        mem_mb=resources_of("extract_particles")["mem_mb"],
        runtime=chunk_runtime("extract_particles"),
    log:
        out("logs/chunks/{chunk}/extract.log"),
    conda:
        "../envs/spa.yaml"
    script:
        "../scripts/movie_stage.py"


rule aggregate_particles:
    input:
        manifests=chunk_manifests("extract"),
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
        manifests=chunk_manifests("extract"),
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
    if CHUNKS
    else []
)
