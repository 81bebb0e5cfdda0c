"""A simulated kiosk device bridge: the local daemon a hall kiosk runs beside its browser."""
