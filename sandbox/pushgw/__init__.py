"""A vendor-neutral app push gateway (like a push aggregator over Huawei, Xiaomi and APNs)."""
