-- Who made each call, unambiguously (`key:<name>` or `user:<sub>`): `key` is the name shown, which a signed-in
-- user's email may share with an API key. Rows written before stay NULL (their caller cannot be told now).
ALTER TABLE audit ADD COLUMN principal TEXT;
CREATE INDEX audit_principal_id ON audit (principal, id);
