"""One module per processing job PATo knows (`ProcessingJob.recipe`): each says which rows and
files it writes and which PATo page shows them.

| recipe | module | rows |
|---|---|---|
| em-spa-preprocess | `em_spa_preprocess` | Atlas, GridSquare, FoilHole, Movie, MotionCorrection, CTF, RelativeIceThickness, ParticlePicker |
| em-spa-class2d | `em_spa_class2d` | ParticleClassificationGroup (2D), ParticleClassification |
| em-tomo-preprocess | `em_tomo_preprocess` | Movie, MotionCorrection, CTF per tilt |
| em-tomo-align | `em_tomo_align` | Tomogram, TiltImageAlignment |

A new recipe (em-spa-class3d, em-spa-refine, a denoised ProcessedTomogram) is one more module
with a `RECIPE` and an `ingest(run, collection, ...)`, listed where `emproc.ispyb.ingest`
builds the collection's recipes.
"""
