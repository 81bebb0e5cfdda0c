"""A Chinese cloud SMS gateway (Aliyun SendSms style): signature, templates, limits, reports."""
