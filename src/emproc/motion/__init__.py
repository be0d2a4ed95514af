"""emproc.motion."""
