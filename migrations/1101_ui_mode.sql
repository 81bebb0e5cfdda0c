-- 长辈版 as a saved preference: chosen once (on the phone, or at a hall's kiosk), it follows the
-- resident to every device and channel through /me.
ALTER TABLE bff.persons
    ADD COLUMN ui_mode text NOT NULL DEFAULT 'standard' CHECK (ui_mode IN ('standard', 'elder'));
