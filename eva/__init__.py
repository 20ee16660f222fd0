"""Eva, a real-time voice companion that runs offline on one machine."""

__version__ = "0.1.0"
