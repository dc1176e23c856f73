"""A loopback emulator of Africa's Talking's SMS API for tests and local runs."""

from retain_emulator.delivery import DeliveryPlan
from retain_emulator.server import AfricasTalkingEmulator
from retain_emulator.wire import mask_number

__all__ = ["AfricasTalkingEmulator", "DeliveryPlan", "mask_number"]
