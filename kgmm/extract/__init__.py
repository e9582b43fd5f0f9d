"""Extraction: the spaCy pipeline configured by a domain pack (see ``kgmm.extract.pipeline``)."""
