# emproc: automated cryo-EM processing. Entry point; the stages live in rules/*.smk.
#   snakemake --configfile my_session.yaml --profile profiles/local
# There is deliberately no `configfile:` directive: Snakemake would merge the example
# config/config.yaml under the user's file, so a missing pixel size, dose or gain reference
# would silently take the example's value. Every run names its config; the schema fills in
# only the keys that are safe to default (rules/common.smk).

from snakemake.utils import min_version

min_version("9.0")


include: "rules/common.smk"
include: "rules/spa.smk"
include: "rules/particles.smk"
include: "rules/spa3d.smk"
include: "rules/tomo.smk"
include: "rules/ispyb.smk"
include: "rules/report.smk"


localrules:
    config_used,


rule config_used:
    output:
        out("config_used.yaml"),
    params:
        config=config,
    log:
        out("logs/config_used.log"),
    run:
        from emproc.config import write_config

        write_config(params.config, output[0])


rule all:
    default_target: True
    input:
        rules.config_used.output,
        SPA_TARGETS,
        PARTICLE_TARGETS,
        SPA3D_TARGETS,
        TOMO_TARGETS,
        ISPYB_TARGETS,
        rules.session_report.output.html,
