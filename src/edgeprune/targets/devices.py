"""Device profiles: the flash and SRAM of common microcontroller classes, read from ``devices.json``.

``--device cortex-m4`` sets ``ram=`` to the part's SRAM and ``flash=`` to its flash, with the
runtime's code allowance (``runtime_flash``) counted beside the model's file. The figures are the
parts' datasheet sizes; the allowance is stated, not measured (see the file's ``_about``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from edgeprune.errors import BudgetError


class UnknownDeviceError(BudgetError, ValueError):
    """No device profile of that name; the message lists the known ones."""


@dataclass(frozen=True)
class Device:
    """One microcontroller class.

    Attributes:
        name: the profile's name (``cortex-m4``).
        description: what parts it stands for.
        flash: bytes of flash.
        sram: bytes of SRAM (the arena budget).
        clock_mhz: the core clock.
        runtime_flash: flash bytes allowed for the runtime's code beside the model.
    """

    name: str
    description: str
    flash: int
    sram: int
    clock_mhz: float
    runtime_flash: int

    def budget_fields(self) -> dict:
        """What a :class:`edgeprune.budget.Budget` takes from the device."""
        return {"ram": float(self.sram), "flash": float(self.flash), "runtime_flash": float(self.runtime_flash)}


@lru_cache(maxsize=1)
def _profiles() -> dict[str, dict]:
    text = resources.files("edgeprune.targets").joinpath("devices.json").read_text()
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def device_names() -> list[str]:
    """The known profiles."""
    return list(_profiles())


def get_device(name: str) -> Device:
    """The profile ``name`` (case-insensitive).

    Raises:
        UnknownDeviceError: no such profile (the message lists the known ones).

    Example:
        >>> get_device("cortex-m4").sram
        65536
    """
    key = str(name).strip().lower()
    profiles = _profiles()
    if key not in profiles:
        raise UnknownDeviceError(f"unknown device {name!r}; use one of {', '.join(profiles)}")
    p = profiles[key]
    return Device(key, p["description"], int(p["flash"]), int(p["sram"]), float(p["clock_mhz"]),
                  int(p["runtime_flash"]))
