"""WeChat Pay API v3, the merchant side: signed calls, verified answers, verified notifications."""
