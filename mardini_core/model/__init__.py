"""The MarDini networks: MAR planner, DM generator, attention kernels."""
from .mardini import MarDini
from .planner import Planner
from .generator import Generator

__all__ = ["MarDini", "Planner", "Generator"]
