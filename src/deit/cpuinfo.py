"""What Linux says of this CPU (``/proc/cpuinfo``): its vendor, family, model and name.

Two users today: the machine record of every run (:func:`deit.hardware.hardware`),
and the rule that picks the library of the students' linear layers
(:mod:`deit.models.linear`), which depends on the CPU's generation, not only on
its instruction set.
"""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def cpu_fields() -> dict[str, str]:
    """The first core's ``/proc/cpuinfo`` fields (``vendor_id``, ``cpu family``, ``model``,
    ``model name``, ...); empty where there is no such file (not Linux)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return {}
    fields = {}
    for line in path.read_text().split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def amd_family() -> int | None:
    """The CPU's family number if AMD makes it (25: Zen 3 and Zen 4, 26: Zen 5), else None."""
    fields = cpu_fields()
    if fields.get("vendor_id") != "AuthenticAMD" or not fields.get("cpu family", "").isdigit():
        return None
    return int(fields["cpu family"])
