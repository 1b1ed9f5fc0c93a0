-- Who issued each command (ListCommands shows it): the caller's principal,
-- or `system:auto-restart`. Commands issued before are left empty; a
-- constant default adds the column without rewriting the table.
ALTER TABLE commands ADD COLUMN principal text NOT NULL DEFAULT '';
