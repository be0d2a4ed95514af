# ISPyB ingest: the last rule. Inputs are every chunk manifest and every tomogram summary, so
# any new or changed result reruns it; the ingest itself writes only the units whose files
# changed (hashes in OUTDIR/ISPyB/ispyb_ids.json), each in its own transaction, retried on
# transient errors. Database: config ispyb.credentials / $ISPYB_CREDENTIALS, else the embedded
# SQLite database in OUTDIR (docs/ispyb.md).


rule ispyb_ingest:
    input:
        # the chunk manifests name the movies (and failures) to ingest
        imports=chunk_manifests("import"),
        motion=chunk_manifests("motion"),
        ctf=chunk_manifests("ctf"),
        # a function: it runs after every rules file is read, whatever the include order
        tomograms=lambda wildcards: (
            expand(f"{TOMO_DIR}_tomo.json", tilt_series=TILT_SERIES)
            if "TILT_SERIES" in globals()
            else []
        ),
        # picking and 2D results reach ISPyB once their aggregates exist
        particles=lambda wildcards: PARTICLE_TARGETS,
    output:
        state=out("ISPyB/ingest_state.json"),
        database=out(f"ISPyB/database_{ispyb_database_identity()}.id"),
    params:
        config=config,
    log:
        out("logs/ispyb_ingest.log"),
    localrule: True
    conda:
        "../envs/ispyb.yaml"
    script:
        "../scripts/ispyb_ingest.py"


# The 3D results' ingest: a second pass of the same idempotent ingest once the 3D steps are
# done, so the movies' rows never wait for 3D (minutes to hours) and the 3D rows never wait
# for the next movie. After ispyb_ingest (its state is an input): one ingest at a time.
rule ispyb_ingest_3d:
    input:
        imports=chunk_manifests("import"),
        motion=chunk_manifests("motion"),
        ctf=chunk_manifests("ctf"),
        spa3d=lambda wildcards: SPA3D_TARGETS,
        ingested=rules.ispyb_ingest.output.state,
    output:
        marker=out("ISPyB/ingest_3d.json"),
    params:
        config=config,
    log:
        out("logs/ispyb_ingest_3d.log"),
    localrule: True
    conda:
        "../envs/ispyb.yaml"
    script:
        "../scripts/ispyb_ingest_3d.py"


# the marker too: Snakemake checks only the requested outputs of a job for being missing
ISPYB_TARGETS = [
    rules.ispyb_ingest.output.state,
    rules.ispyb_ingest.output.database,
    *([rules.ispyb_ingest_3d.output.marker] if SPA3D_TARGETS else []),
]
