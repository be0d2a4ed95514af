# The session report: after every aggregate, one self-contained HTML page.


def report_inputs(wildcards):
    # a function: evaluated once every rules file has defined its targets
    return [*SPA_TARGETS, *PARTICLE_TARGETS, *TOMO_TARGETS, *ISPYB_TARGETS]


rule session_report:
    input:
        report_inputs,
    output:
        html=out("report/index.html"),
    params:
        output_dir=OUTDIR,
        title=f"emproc report: {config['session']['visit']} ({SESSION_DIR})",
    log:
        out("logs/report.log"),
    localrule: True
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/session_report.py"
