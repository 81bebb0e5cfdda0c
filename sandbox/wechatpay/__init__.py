"""WeChat Pay API v3 merchant platform (the other side of the wire)."""
