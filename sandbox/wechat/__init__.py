"""The WeChat server API simulation (mini-program login, phone numbers, face verification)."""
