-- The working-day calendar for 承诺时限 arithmetic. A day is a working day when it is Monday to
-- Friday and not listed as 'holiday', or when it is listed as 'workday' (调休: a weekend worked).
-- `source` keeps where a row came from, so a provisional year can be replaced when the State
-- Council publishes its notice (new rows go in through a new migration, never by editing this one).
CREATE TABLE IF NOT EXISTS bff.holiday_calendar (
    day date PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('holiday', 'workday')),
    name text NOT NULL,
    source text NOT NULL
);

-- 2026: 国办发明电〔2025〕 "国务院办公厅关于2026年部分节假日安排的通知" (2025-11-04).
INSERT INTO bff.holiday_calendar (day, kind, name, source)
SELECT d::date, 'holiday', name, 'gov:2025-11-04' FROM (VALUES
    ('2026-01-01', '2026-01-03', '元旦'),
    ('2026-02-15', '2026-02-23', '春节'),
    ('2026-04-04', '2026-04-06', '清明节'),
    ('2026-05-01', '2026-05-05', '劳动节'),
    ('2026-06-19', '2026-06-21', '端午节'),
    ('2026-09-25', '2026-09-27', '中秋节'),
    ('2026-10-01', '2026-10-07', '国庆节')
) AS h(first_day, last_day, name),
LATERAL generate_series(first_day::date, last_day::date, interval '1 day') AS d
ON CONFLICT (day) DO NOTHING;

INSERT INTO bff.holiday_calendar (day, kind, name, source) VALUES
    ('2026-01-04', 'workday', '元旦调休上班', 'gov:2025-11-04'),
    ('2026-02-14', 'workday', '春节调休上班', 'gov:2025-11-04'),
    ('2026-02-28', 'workday', '春节调休上班', 'gov:2025-11-04'),
    ('2026-05-09', 'workday', '劳动节调休上班', 'gov:2025-11-04'),
    ('2026-09-20', 'workday', '国庆节调休上班', 'gov:2025-11-04'),
    ('2026-10-10', 'workday', '国庆节调休上班', 'gov:2025-11-04')
ON CONFLICT (day) DO NOTHING;

-- 2027: the notice was not yet published when this was written. Only the statutory days
-- (《全国年节及纪念日放假办法》, 2024 revision) are listed; 调休 follows in a later migration.
INSERT INTO bff.holiday_calendar (day, kind, name, source) VALUES
    ('2027-01-01', 'holiday', '元旦', 'statutory:provisional'),
    ('2027-02-05', 'holiday', '春节', 'statutory:provisional'),
    ('2027-02-06', 'holiday', '春节', 'statutory:provisional'),
    ('2027-02-07', 'holiday', '春节', 'statutory:provisional'),
    ('2027-02-08', 'holiday', '春节', 'statutory:provisional'),
    ('2027-04-05', 'holiday', '清明节', 'statutory:provisional'),
    ('2027-05-01', 'holiday', '劳动节', 'statutory:provisional'),
    ('2027-05-02', 'holiday', '劳动节', 'statutory:provisional'),
    ('2027-06-09', 'holiday', '端午节', 'statutory:provisional'),
    ('2027-09-15', 'holiday', '中秋节', 'statutory:provisional'),
    ('2027-10-01', 'holiday', '国庆节', 'statutory:provisional'),
    ('2027-10-02', 'holiday', '国庆节', 'statutory:provisional'),
    ('2027-10-03', 'holiday', '国庆节', 'statutory:provisional')
ON CONFLICT (day) DO NOTHING;
