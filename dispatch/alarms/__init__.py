"""Alarms: rules evaluated as readings arrive and on windows, the transitions they produce,
the lifecycle of an alarm, and the grouping of alarm floods by the estate's networks.

Pure: numbers, rules and networks in, transitions and groups out; no I/O, database or
broker (an import-linter contract keeps it so). docs/alarms.md tells the story.

- ``stream.StreamEvaluator``: streaming rules, one reading at a time, and the deadman.
- ``window.WindowedEvaluator``: windowed rules over arrays of every meter's aggregates.
- ``lifecycle``: raised -> acknowledged -> cleared, shelving with an expiry.
- ``grouping.group_alarms``: one group per feeder or tank outage, naming the cause.
"""

from dispatch.alarms.frames import CapacityInputs, SeriesWindow, WindowFrame, WindowInputs
from dispatch.alarms.grouping import GroupedAlarm, Grouping, group_alarms
from dispatch.alarms.lifecycle import Alarm, AlarmBoard, AlarmStateError, AlarmStep
from dispatch.alarms.model import AlarmTransition
from dispatch.alarms.stream import StreamEvaluator
from dispatch.alarms.window import WindowedEvaluator

__all__ = ["Alarm", "AlarmBoard", "AlarmStateError", "AlarmStep", "AlarmTransition",
           "CapacityInputs", "GroupedAlarm", "Grouping", "SeriesWindow", "StreamEvaluator",
           "WindowFrame", "WindowInputs", "WindowedEvaluator", "group_alarms"]
