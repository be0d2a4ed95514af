"""emproc.simulate."""
