"""A loopback emulator of Africa's Talking's SMS API for tests and local runs."""
