"""A loopback emulator of Africa's Talking's SMS and voice APIs, and a USSD
dialler that plays a customer, for tests and local runs."""

from retain_emulator.delivery import DeliveryPlan
from retain_emulator.server import AfricasTalkingEmulator
from retain_emulator.ussd import UssdDialer
from retain_emulator.wire import mask_number

__all__ = ["AfricasTalkingEmulator", "DeliveryPlan", "UssdDialer", "mask_number"]
