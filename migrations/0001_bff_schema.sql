-- The BFF's own schema. Migration files are numbered by domain so that work on different
-- domains never collides: 00xx platform, 01xx identity, 02xx catalogue, 03xx appointments
-- and cases, 04xx push.
CREATE SCHEMA IF NOT EXISTS bff;
