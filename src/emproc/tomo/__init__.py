"""emproc.tomo."""
