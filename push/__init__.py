"""Notifications: the transactional outbox every domain writes to, and (later) its relay,
consumers and channels."""
