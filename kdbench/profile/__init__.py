"""Cost of a model: parameters, MACs (two counters), artifact sizes, latency and peak memory.

``profile_model(model, ProfileOptions(...), out_dir, score)`` returns the ``profile`` record of
the cell JSON; docs/profiling.md explains every number, its unit and how it is measured.
"""

from kdbench.profile.profiler import ProfileOptions, profile_model

__all__ = ["ProfileOptions", "profile_model"]
