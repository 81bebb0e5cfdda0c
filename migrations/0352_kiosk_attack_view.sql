-- Issue 9 section 2: the operator's view of kiosks under attack reads the kiosk channel's recent
-- audit records (refused logins, per-card lockouts) by time.
CREATE INDEX IF NOT EXISTS audit_log_kiosk_at ON bff.audit_log (at) WHERE channel = 'kiosk';
