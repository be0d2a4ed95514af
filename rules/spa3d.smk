# SPA 3D after 2D classification (docs/spa3d.md): the good 2D classes' particles, then, once
# spa3d.min_particles exist, RELION 3.1's initial model, 3D classification, auto-refine of the
# best class, post-processing and the B-factor fit. One job per step, so on a cluster each
# step is one scheduler job with its own threads/memory (resources.<rule>); a step's threads
# are split over its MPI ranks (spa3d.<step>.mpi_ranks). Included after rules/particles.smk.


include: "spa3d_functions.smk"


# A checkpoint: whether 3D runs at all depends on how many particles it selected.
checkpoint select_particles_3d:
    input:
        selected=class2d_selected_stars,
    output:
        star=out("Select/particles_selected.star"),
        summary=out("Select/selection.json"),
    params:
        min_particles=SPA3D["min_particles"],
    localrule: True
    log:
        out("logs/spa3d/select.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/select_particles_3d.py"


rule initial_model_3d:
    input:
        particles=rules.select_particles_3d.output.star,
    output:
        summary=out("InitialModel/summary.json"),
        map=out("InitialModel/initial_model.mrc"),
    params:
        step="initial_model",
        spa3d=SPA3D,
        diameter=SPA3D_DIAMETER,
        project_dir=lambda wildcards: OUTDIR,
    threads: resources_of("initial_model_3d")["threads"]
    resources:
        mem_mb=resources_of("initial_model_3d")["mem_mb"],
        runtime=resources_of("initial_model_3d")["runtime"],
    log:
        out("logs/spa3d/initial_model.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/refine3d_step.py"


rule class3d:
    input:
        particles=rules.select_particles_3d.output.star,
        reference=rules.initial_model_3d.output.map,
    output:
        summary=out("Class3D/summary.json"),
        map=out("Class3D/best_class.mrc"),
        particles=out("Class3D/best_class_particles.star"),
    params:
        step="class3d",
        spa3d=SPA3D,
        diameter=SPA3D_DIAMETER,
        project_dir=lambda wildcards: OUTDIR,
    threads: resources_of("class3d")["threads"]
    resources:
        mem_mb=resources_of("class3d")["mem_mb"],
        runtime=resources_of("class3d")["runtime"],
    log:
        out("logs/spa3d/class3d.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/refine3d_step.py"


rule refine3d:
    input:
        particles=rules.class3d.output.particles,
        reference=rules.class3d.output.map,
    output:
        summary=out("Refine3D/summary.json"),
        map=out("Refine3D/run_class001.mrc"),
    params:
        step="refine",
        spa3d=SPA3D,
        diameter=SPA3D_DIAMETER,
        project_dir=lambda wildcards: OUTDIR,
    threads: resources_of("refine3d")["threads"]
    resources:
        mem_mb=resources_of("refine3d")["mem_mb"],
        runtime=resources_of("refine3d")["runtime"],
    log:
        out("logs/spa3d/refine.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/refine3d_step.py"


rule postprocess3d:
    input:
        refine_summary=rules.refine3d.output.summary,
    output:
        summary=out("PostProcess/summary.json"),
        star=out("PostProcess/postprocess.star"),
    params:
        step="postprocess",
        spa3d=SPA3D,
        diameter=SPA3D_DIAMETER,
        project_dir=lambda wildcards: OUTDIR,
    threads: 1
    resources:
        mem_mb=resources_of("postprocess3d")["mem_mb"],
        runtime=resources_of("postprocess3d")["runtime"],
    log:
        out("logs/spa3d/postprocess.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/refine3d_step.py"


rule bfactor3d:
    input:
        refine_summary=rules.refine3d.output.summary,
        postprocess_summary=rules.postprocess3d.output.summary,
    output:
        summary=out("BFactor/summary.json"),
    params:
        step="bfactor",
        spa3d=SPA3D,
        diameter=SPA3D_DIAMETER,
        project_dir=lambda wildcards: OUTDIR,
    threads: resources_of("bfactor3d")["threads"]
    resources:
        mem_mb=resources_of("bfactor3d")["mem_mb"],
        runtime=resources_of("bfactor3d")["runtime"],
    log:
        out("logs/spa3d/bfactor.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/refine3d_step.py"


rule spa3d_index:
    input:
        unpack(spa3d_step_summaries),
        selection=rules.select_particles_3d.output.summary,
    output:
        index=out("spa3d.json"),
    localrule: True
    log:
        out("logs/spa3d/index.log"),
    conda:
        "../envs/particles.yaml"
    script:
        "../scripts/spa3d_index.py"


SPA3D_TARGETS = (
    [rules.spa3d_index.output.index]
    if CHUNKS and SPA3D["enabled"] and config["session"]["experiment"] == "spa"
    else []
)
