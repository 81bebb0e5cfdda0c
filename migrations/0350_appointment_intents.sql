-- Issue 9 section 6: every upstream mutation of an appointment records its intent first.
-- 'cancelling': the resident asked to cancel and the booking system's answer is not known yet;
-- the seat and the person's caps stay counted until the booking system's truth is known.
-- told_failed_at: the resident was answered a failure (5xx) while the row was in doubt; the
-- resolver then makes the row END failed (it voids the request upstream and undoes what the
-- booking system did) instead of completing it behind the resident's back.
ALTER TABLE bff.appointments DROP CONSTRAINT IF EXISTS appointments_status_check;
ALTER TABLE bff.appointments ADD CONSTRAINT appointments_status_check
    CHECK (status IN ('pending', 'booked', 'checked_in', 'cancelling', 'cancelled', 'no_show', 'failed'));
ALTER TABLE bff.appointments ADD COLUMN IF NOT EXISTS cancel_request_id uuid;
ALTER TABLE bff.appointments ADD COLUMN IF NOT EXISTS cancel_requested_at timestamptz;
ALTER TABLE bff.appointments ADD COLUMN IF NOT EXISTS told_failed_at timestamptz;
CREATE INDEX IF NOT EXISTS appointments_in_doubt ON bff.appointments (updated_at)
    WHERE status IN ('pending', 'cancelling');
CREATE INDEX IF NOT EXISTS appointments_slot_live ON bff.appointments (slot_id)
    WHERE status IN ('pending', 'booked', 'checked_in', 'cancelling');
