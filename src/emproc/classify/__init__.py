"""emproc.classify."""
