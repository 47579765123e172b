-- Short-lived state any replica may need to continue a request: a script paused for the user's input.
CREATE TABLE state (key text PRIMARY KEY, owner text NOT NULL, body text NOT NULL, expires double precision NOT NULL);
CREATE INDEX state_expires ON state (expires);
