"""A courier (EMS-like): shipments, tracking, signed status callbacks, a changes feed."""
