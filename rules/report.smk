# The session report: after every aggregate, one self-contained HTML page.


rule session_report:
    input:
        report_inputs,
    output:
        html=out("report/index.html"),
    params:
        output_dir=lambda wildcards: OUTDIR,
        title=f"emproc report: {config['session']['visit']} ({SESSION_DIR})",
    log:
        out("logs/report.log"),
    localrule: True
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/session_report.py"
