-- Short-lived state any replica may need to continue a request: a script paused for the user's input.
CREATE TABLE state (key TEXT PRIMARY KEY, owner TEXT NOT NULL, body TEXT NOT NULL, expires REAL NOT NULL);
CREATE INDEX state_expires ON state (expires);
