-- push/ owns the outbox from here on (0304 created it with the journey, before push existed).
-- Every domain writes it only through push.outbox.enqueue, inside its own transaction.
COMMENT ON TABLE bff.outbox IS 'owned by push/: written through push.outbox.enqueue in the producer''s transaction';
CREATE INDEX IF NOT EXISTS outbox_person ON bff.outbox (person_id, created_at);
