-- 代办 mandates (issue 15): a resident (the principal) lets another resident (the agent) act for
-- them within a scope until an expiry. The agent starts it with a one-time invite code; the
-- principal grants (at L3) naming the code; the agent accepts. A guardian mandate (a minor's
-- guardian) waits for an operator to confirm the proof of guardianship before it can be used.
CREATE TABLE IF NOT EXISTS bff.mandate_invites (
    -- sha256 of the code: the code itself is only ever shown to the agent who made it.
    code_hash bytea PRIMARY KEY,
    agent_id text NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS mandate_invites_agent ON bff.mandate_invites (agent_id, created_at);

CREATE TABLE IF NOT EXISTS bff.mandates (
    id uuid PRIMARY KEY,
    principal_id text NOT NULL,
    agent_id text NOT NULL CHECK (agent_id <> principal_id),
    kind text NOT NULL CHECK (kind IN ('family', 'guardian')),
    actions text[] NOT NULL CHECK (actions <@ ARRAY['read_cases', 'apply', 'book', 'pay']::text[]
                                   AND cardinality(actions) > 0),
    -- Catalogue topics (主题) the agent may apply in; empty: any item.
    categories text[] NOT NULL DEFAULT '{}',
    status text NOT NULL CHECK (status IN ('offered', 'pending_proof', 'active', 'revoked')),
    expires_at timestamptz NOT NULL,
    -- Guardian mandates: the reference of the document the operator checked (出生医学证明 or 户口簿).
    proof_ref text,
    proof_by text,
    proof_at timestamptz,
    accepted_at timestamptz,
    revoked_at timestamptz,
    revoked_by text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS mandates_principal ON bff.mandates (principal_id, created_at);
CREATE INDEX IF NOT EXISTS mandates_agent ON bff.mandates (agent_id, created_at);
