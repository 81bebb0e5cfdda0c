-- Issue 9 §6: a hold whose answer was lost (the booking system may have made it) is voided there by
-- the resolver rather than left to keep an upstream seat until its TTL. `in_doubt_at`: answered 503
-- after the request was sent; `upstream_attempt`: how many upstream requests of this hold were voided,
-- so that a retry of the resident's key after a void asks the booking system afresh.
ALTER TABLE bff.appointment_holds ADD COLUMN IF NOT EXISTS in_doubt_at timestamptz;
ALTER TABLE bff.appointment_holds ADD COLUMN IF NOT EXISTS upstream_attempt integer NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS appointment_holds_in_doubt ON bff.appointment_holds (in_doubt_at)
    WHERE in_doubt_at IS NOT NULL;
