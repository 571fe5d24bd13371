"""Meter node firmware for an ESP32-class board (MicroPython), wire contract v1.

Every PERIOD_S the node reads its meter and publishes one SenML pack (RFC 8428) on
estate/v1/{estate}/{facility}/{device}/telemetry at QoS 1. On connecting it publishes a
retained birth message on .../status and leaves a retained Last Will {"state": "offline"}
with the broker. Packs measured while the broker is unreachable wait in a ring buffer in RAM
and go out oldest first once the connection is back. See docs/contract.md.

umqtt.simple speaks MQTT 3.1.1 (no response topic, no correlation data), so this node takes
no commands: cmd/req needs an MQTT 5 client.
"""

import time

if not hasattr(time, "ticks_ms"):  # CPython: MicroPython's clock comes from the shim's utime
    try:
        import utime as time
    except ImportError:  # no shim on the path: only the functions without a clock work
        pass

try:
    import ujson as json
except ImportError:
    import json

try:
    import machine
except ImportError:  # CPython (the tests) or a port without it: no pulse input
    machine = None

try:
    from umqtt.simple import MQTTClient
except ImportError:
    MQTTClient = None

ESTATE = "demo"
FACILITY = "textile"
DEVICE = "main"
BROKER = "192.0.2.10"  # a documentation address: put the estate broker's here
PORT = 1883
USER = None
PASSWORD = None
CLIENT_ID = ESTATE + "." + FACILITY + "." + DEVICE
# The broker publishes the Last Will after 1.5 x keepalive without a packet; a pack every
# PERIOD_S keeps the connection busy well inside that.
KEEPALIVE_S = 60
PERIOD_S = 10
# One hour of packs at PERIOD_S = 10. A pack of two readings is about 120 bytes of JSON once
# encoded, kept here as tuples of a similar size: about 50 KB of an ESP32's heap.
RING_PACKS = 360
# The meter's S0 pulse output: 1000 impulses per kWh (the common DIN-rail meter constant) is
# 1 Wh per impulse.
WH_PER_PULSE = 1
PULSE_PIN = 4

PREFIX = ESTATE + ":" + FACILITY + ":" + DEVICE + ":"

# time.time() counts from 2000-01-01 on most embedded ports and from 1970 on the others.
EPOCH_OFFSET_S = 946684800 if time.gmtime(0)[0] == 2000 else 0
# An RTC that NTP has not set starts near its epoch: any date after 2020-09-13 means it was set.
CLOCK_SET_AFTER_S = 1600000000


def topic(channel):
    return "estate/v1/" + ESTATE + "/" + FACILITY + "/" + DEVICE + "/" + channel


def unix_time_s():
    """Seconds since 1970-01-01 UTC, or None while the clock has not been set."""
    now = time.time() + EPOCH_OFFSET_S
    return now if now >= CLOCK_SET_AFTER_S else None


def make_pack(identity_prefix, readings, base_time_s):
    """A SenML pack: bn and bt on the first record, one record per reading.

    ``readings`` are (local name, SenML unit, value) tuples; ``base_time_s`` is seconds since
    1970, or minus the readings' age in seconds when the clock is not set (RFC 8428 relative
    time: the receiver adds its own "now").
    """
    pack = [{"n": name, "u": unit, "v": value} for name, unit, value in readings]
    if pack:
        pack[0]["bn"] = identity_prefix
        pack[0]["bt"] = base_time_s
    return pack


class Ring:
    """The newest ``size`` items, oldest first; pushing onto a full ring drops the oldest."""

    def __init__(self, size):
        self._items = [None] * size
        self._start = 0
        self._count = 0
        self.dropped = 0

    def __len__(self):
        return self._count

    def push(self, item):
        size = len(self._items)
        if self._count == size:
            self._start = (self._start + 1) % size
            self._count -= 1
            self.dropped += 1
        self._items[(self._start + self._count) % size] = item
        self._count += 1

    def peek_oldest(self):
        return self._items[self._start] if self._count else None

    def pop_oldest(self):
        item = self.peek_oldest()
        if self._count:
            self._items[self._start] = None
            self._start = (self._start + 1) % len(self._items)
            self._count -= 1
        return item


class PulseMeter:
    """Energy and power from the meter's S0 pulse output."""

    def __init__(self, pin_number):
        self.pulses = 0
        self._last_ms = None
        self._interval_ms = None
        pin = machine.Pin(pin_number, machine.Pin.IN, machine.Pin.PULL_UP)
        pin.irq(trigger=machine.Pin.IRQ_FALLING, handler=self._pulse)

    def _pulse(self, _pin):
        now = time.ticks_ms()
        if self._last_ms is not None:
            self._interval_ms = time.ticks_diff(now, self._last_ms)
        self._last_ms = now
        self.pulses += 1

    def readings(self):
        # MicroPython floats are single precision on the ESP32 (about 7 digits), so the register
        # goes out as an integer count of Wh; ingest converts it to kWh in double precision.
        # It counts from boot: a node that must survive reboots keeps it in flash.
        power_w = 0.0
        if self._interval_ms:
            # With no pulse for longer than the last interval the load has dropped since.
            interval = max(self._interval_ms, time.ticks_diff(time.ticks_ms(), self._last_ms))
            power_w = WH_PER_PULSE * 3600000.0 / interval
        return [("power", "W", power_w), ("energy_import", "Wh", self.pulses * WH_PER_PULSE)]


def set_clock():
    try:
        import ntptime
        ntptime.settime()
    except Exception:  # no ntptime or no answer: relative times until it works
        pass


def go_online(client):
    """Connect (a new socket each time), set the clock, publish the retained birth message."""
    client.connect()
    set_clock()
    birth = {"state": "online"}
    now = unix_time_s()
    if now is not None:
        birth["ts"] = now
    client.publish(topic("status"), json.dumps(birth), True, 1)


def close_quietly(client):
    try:
        client.sock.close()  # sockets are few on an ESP32: never leak one per reconnect
    except Exception:
        pass


def flush(client, ring):
    """Send buffered packs oldest first; an error leaves the unsent ones in the ring."""
    while len(ring):
        taken_ms, taken_s, readings = ring.peek_oldest()
        if taken_s is None:
            base = -time.ticks_diff(time.ticks_ms(), taken_ms) / 1000
        else:
            base = taken_s
        # A QoS 1 publish in umqtt.simple returns only after the broker's PUBACK.
        client.publish(topic("telemetry"), json.dumps(make_pack(PREFIX, readings, base)),
                       False, 1)
        ring.pop_oldest()


def main(iterations=None):
    """Run the node: forever, or ``iterations`` passes of the loop (tests, on CPython)."""
    meter = PulseMeter(PULSE_PIN)
    ring = Ring(RING_PACKS)
    client = MQTTClient(CLIENT_ID, BROKER, PORT, USER, PASSWORD, KEEPALIVE_S)
    client.set_last_will(topic("status"), json.dumps({"state": "offline"}), True, 1)
    online = False
    due_ms = time.ticks_ms()
    while iterations is None or iterations > 0:
        if iterations is not None:
            iterations -= 1
        if time.ticks_diff(time.ticks_ms(), due_ms) >= 0:
            due_ms = time.ticks_add(due_ms, PERIOD_S * 1000)
            ring.push((time.ticks_ms(), unix_time_s(), meter.readings()))
        try:
            if not online:
                go_online(client)
                online = True
            flush(client, ring)
            client.check_msg()
        except OSError:
            online = False  # the ring keeps the unsent packs until the next connection
            close_quietly(client)
        time.sleep_ms(200)


if __name__ == "__main__":
    main()
