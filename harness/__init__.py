"""edgeharness: benchmark TFLite/LiteRT models across a fleet of real devices."""

__version__ = "0.1.0"
