"""emproc.picking."""
