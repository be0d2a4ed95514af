"""One module per processing job PATo knows (`ProcessingJob.recipe`): each says which rows and
files it writes and which PATo page shows them.

| recipe | module | rows |
|---|---|---|
| em-spa-preprocess | `em_spa_preprocess` | Atlas, GridSquare, FoilHole, Movie, MotionCorrection, CTF, RelativeIceThickness, ParticlePicker |
| em-spa-class2d | `em_spa_class2d` | ParticleClassificationGroup (2D), ParticleClassification |
| em-spa-class3d | `em_spa_class3d` | ParticleClassificationGroup (3D), ParticleClassification per class, CryoemInitialModel + links |
| em-spa-refine | `em_spa_refine` | ParticleClassificationGroup (3D, the refined map), ParticleClassification, BFactorFit |
| em-tomo-preprocess | `em_tomo_preprocess` | Movie, MotionCorrection, CTF per tilt |
| em-tomo-align | `em_tomo_align` | Tomogram, TiltImageAlignment |
| em-tomo-align (denoising step) | `em_tomo_denoise` | ProcessedTomogram "Denoised" under the Tomogram |

`classification` writes a group and its classes for the three classification recipes.

A new recipe is one more module with a `RECIPE` and an `ingest(run, collection, ...)`,
listed where `emproc.ispyb.ingest` builds the collection's recipes. `em_tomo_denoise` has no
RECIPE: at Diamond denoising is a step of em-tomo-align and its table has no program column.
"""
