"""emproc.simulate: synthetic microscope sessions with exact ground truth (docs/simulator.md)."""
