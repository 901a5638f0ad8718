"""nipype-secondlevel: group-level (second-level) fMRI statistics as Nipype workflows."""

__version__ = "0.1.0"
