"""emproc.extract."""
