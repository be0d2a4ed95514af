# Configuration and input functions of rules/spa3d.smk (functions apart from rules: Snakemake lint).

SPA3D = config["spa3d"]
SPA3D_DIAMETER = SPA3D["particle_diameter_angstrom"] or config["picking"]["max_diameter_angstrom"]


def class2d_selected_stars(wildcards):
    # the selected-particle STAR next to each classified batch's summary (emproc.classify)
    return [path.replace("summary.json", "particles_selected.star") for path in class2d_summaries(wildcards)]


def spa3d_step_summaries(wildcards):
    with open(checkpoints.select_particles_3d.get().output.summary) as handle:
        ready = json.load(handle)["ready_for_3d"]
    if not ready:
        return {}
    return {
        "initial_model": rules.initial_model_3d.output.summary,
        "class3d": rules.class3d.output.summary,
        "refine": rules.refine3d.output.summary,
        "postprocess": rules.postprocess3d.output.summary,
        "bfactor": rules.bfactor3d.output.summary,
    }
