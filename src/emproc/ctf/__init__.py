"""Contrast transfer function: the model (shared with the simulator) and its estimation."""
