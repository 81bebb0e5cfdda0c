"""The channels a notification may go out on, one module each on the shared base in `base.py`."""
