"""SPA beyond 2D with RELION 3.1 as the engine: selected particles, de novo initial model
(SGD), 3D classification, auto-refine, post-processing and the B-factor fit (docs/spa3d.md)."""
