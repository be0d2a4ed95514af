"""emproc.ispyb."""
