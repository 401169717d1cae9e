"""edrtrial: the service a secretariat runs for a programme of free EDR trials for SMEs."""

__version__ = "0.1.0"
