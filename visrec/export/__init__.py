"""Export trained factors as a self-describing, pickle-free bundle for serving (see :mod:`visrec.serving`)."""
from visrec.export.bundle import FORMAT_VERSION, ExportError, export_model

__all__ = ["FORMAT_VERSION", "ExportError", "export_model"]
