"""The simulator's devices answer commands: the estate's battery, genset and pumps, as
described in the estate file's assets, are driven as simulated assets (``edge.command_handler``),
so an approved plan's setpoints reach something that says accepted, done or why not.

Deferrable loads, chillers and PV have no simulated executor: their commands find no device
and the control room times them out, as it would for a device that is offline.
"""

from __future__ import annotations

from pathlib import Path

from edge.command_executors import (
    SimulatedAssetExecutor,
    SimulatedBattery,
    SimulatedGenset,
    SimulatedPump,
)
from edge.command_handler import CommandHandler, CommandTarget
from estate.assets import BatterySpec, GensetSpec, PumpTankSpec
from estate.commands import CommandPolicy
from estate.model import EstateSpec
from estate.topics import DeviceId


def simulated_command_handler(spec: EstateSpec, log_path: Path) -> CommandHandler | None:
    """A handler for the estate's commandable simulated assets; None if it has none."""
    assets: dict[DeviceId, SimulatedBattery | SimulatedGenset | SimulatedPump] = {}
    policies: dict[DeviceId, CommandPolicy] = {}
    for asset in spec.assets:
        if asset.device is None:
            continue
        facility, device_id = asset.device.split("/", 1)
        device = DeviceId(spec.id, facility, device_id)
        if isinstance(asset, BatterySpec):
            limit = max(asset.charge_kw, asset.discharge_kw)
            assets[device] = SimulatedBattery(max_kw=limit)
            policies[device] = CommandPolicy.from_mapping(
                {"set_battery_kw": {"kw": {"min": -asset.charge_kw, "max": asset.discharge_kw}}})
        elif isinstance(asset, GensetSpec):
            assets[device] = SimulatedGenset(max_kw=asset.max_kw)
            policies[device] = CommandPolicy.from_mapping(
                {"start": {}, "stop": {},
                 "set_power_kw": {"kw": {"min": 0, "max": asset.max_kw}}})
        elif isinstance(asset, PumpTankSpec):
            assets[device] = SimulatedPump()
            policies[device] = CommandPolicy.from_mapping({"start": {}, "stop": {}})
    if not assets:
        return None
    executor = SimulatedAssetExecutor(assets)
    return CommandHandler([CommandTarget(d, policies[d], executor) for d in assets], log_path)
