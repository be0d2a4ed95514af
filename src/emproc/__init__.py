"""emproc: automated cryo-EM processing (SPA and tomography) ingesting into ISPyB."""

__version__ = "0.1.0"
