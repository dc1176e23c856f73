"""The user service: customer profiles, the consent ledger and opt-outs.

It is the only Retain service that stores phone numbers, encrypted at rest
with the key that ``load_or_create_data_key`` keeps in the state folder.
"""

from retain_user.crypto import load_or_create_data_key

__all__ = ["load_or_create_data_key"]
