"""The 12345 hotline (政务服务便民热线) simulation."""
