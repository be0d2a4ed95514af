"""emproc.ispyb: ingest of processing results into ISPyB (see docs/ispyb.md).

schema (table subset, init_db), connect (which database), retry (transactions with backoff),
rows (column values), state (id map), ingest (units, ingest_output_dir), cli (sub-commands).
"""
