-- The dashboard's calls page: each filter reads its rows newest first by id (keyset pagination),
-- and a script's calls are found by its execution id.
CREATE INDEX audit_team_id ON audit (team, id);
CREATE INDEX audit_server_id ON audit (server, id);
CREATE INDEX audit_tool_id ON audit (tool, id);
CREATE INDEX audit_outcome_id ON audit (outcome, id);
CREATE INDEX audit_execution ON audit (execution_id) WHERE execution_id IS NOT NULL;
