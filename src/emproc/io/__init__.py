"""File formats: movies, gain references, EPU/SerialEM metadata, atomic writes."""
