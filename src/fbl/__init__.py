"""fbl: the Feature-Balanced Loss for long-tailed recognition, and the baselines it is compared with."""

__version__ = "0.1.0"
