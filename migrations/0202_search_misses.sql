-- Failed catalogue searches, anonymised (bff/catalogue/misses.py says what is withheld and why):
-- per China-time day, the normalised query text and the outcome, with a count. No user, session,
-- device, address, region or time of day is kept. `outcome`: zero (nothing offered), low (only a
-- "did you mean" without a clear winner), withheld (query = '', text dropped by the rule).
CREATE TABLE IF NOT EXISTS bff.search_misses (
    day date NOT NULL,
    query text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('zero', 'low', 'withheld')),
    count integer NOT NULL CHECK (count > 0),
    PRIMARY KEY (day, query, outcome)
);
