-- Fleet jobs. A slot of a fleet job is run by the host that claims it:
-- one row per (job, slot), written under a per-job advisory lock, so two
-- hosts never both win a slot, and a claim is keyed by the slot itself,
-- so a host with a skewed clock cannot take a slot twice. A claim holds a
-- lease on the database's clock, renewed while the run goes on; an
-- expired lease frees the slot for another host.

-- Each fleet job's definition the fleet runs, and who set it.
CREATE TABLE opsd_jobs (
    job text PRIMARY KEY,
    definition text NOT NULL,
    defined_by text NOT NULL,
    defined timestamptz NOT NULL DEFAULT now()
);

-- What each host makes of each fleet job: its definition, whether its
-- labels let it run the job, and the next slot it computed.
CREATE TABLE opsd_host_jobs (
    host text NOT NULL,
    job text NOT NULL,
    definition text NOT NULL,
    eligible boolean NOT NULL,
    next_slot timestamptz,
    seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (host, job)
);

-- A slot is `scheduled` as RFC 3339, or `manual RUN` for a run started
-- by hand. `earlier` keeps the attempts before the current one.
CREATE TABLE opsd_claims (
    job text NOT NULL,
    slot text NOT NULL,
    scheduled timestamptz NOT NULL,
    definition text NOT NULL,
    host text NOT NULL,
    run_id text NOT NULL,
    attempt integer NOT NULL,
    claimed timestamptz NOT NULL,
    lease_until timestamptz NOT NULL,
    ended timestamptz,
    status text,
    earlier jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (job, slot)
);
CREATE INDEX opsd_claims_live ON opsd_claims (job) WHERE ended IS NULL;
CREATE INDEX opsd_claims_recent ON opsd_claims (job, scheduled DESC);
CREATE INDEX opsd_claims_ended ON opsd_claims (ended);

-- How far each host's clock was from the database's at its last heartbeat.
ALTER TABLE opsd_hosts ADD COLUMN clock_offset_ms bigint;

-- Claims a slot for a run. Outcomes: `won` (until = the lease's end),
-- `taken` (holder has it; detail its status), `busy` (overlap forbid and
-- holder runs detail), `definition` (the fleet runs detail, set by
-- holder), `early` and `late` (detail: seconds; this host's clock is off).
CREATE FUNCTION opsd_claim(
    p_job text, p_slot text, p_scheduled timestamptz, p_definition text,
    p_host text, p_run text, p_attempt integer, p_lease interval,
    p_forbid_overlap boolean, p_early interval, p_late interval)
RETURNS TABLE (outcome text, holder text, detail text, until timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    fleet_def text;
    fleet_by text;
    c opsd_claims%ROWTYPE;
BEGIN
    -- One claim of a job at a time; each statement below then sees
    -- every claim committed before.
    PERFORM pg_advisory_xact_lock(hashtext('opsd job'), hashtext(p_job));
    SELECT j.definition, j.defined_by INTO fleet_def, fleet_by
        FROM opsd_jobs j WHERE j.job = p_job;
    IF NOT FOUND THEN
        INSERT INTO opsd_jobs (job, definition, defined_by) VALUES (p_job, p_definition, p_host);
    ELSIF fleet_def <> p_definition THEN
        RETURN QUERY SELECT 'definition'::text, fleet_by, fleet_def, NULL::timestamptz;
        RETURN;
    END IF;
    IF p_early IS NOT NULL AND p_scheduled > now() + p_early THEN
        RETURN QUERY SELECT 'early'::text, NULL::text,
            extract(epoch FROM p_scheduled - now())::text, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT * INTO c FROM opsd_claims WHERE job = p_job AND slot = p_slot;
    IF FOUND THEN
        -- Only a retry of the host whose attempt ended takes it again.
        IF NOT (c.host = p_host AND c.ended IS NOT NULL AND p_attempt > c.attempt) THEN
            RETURN QUERY SELECT 'taken'::text, c.host, coalesce(c.status, 'running'), NULL::timestamptz;
            RETURN;
        END IF;
    ELSIF p_late IS NOT NULL AND p_scheduled < now() - p_late THEN
        RETURN QUERY SELECT 'late'::text, NULL::text,
            extract(epoch FROM now() - p_scheduled)::text, NULL::timestamptz;
        RETURN;
    END IF;
    IF p_forbid_overlap THEN
        SELECT * INTO c FROM opsd_claims
            WHERE job = p_job AND ended IS NULL AND lease_until > now() AND slot <> p_slot
            LIMIT 1;
        IF FOUND THEN
            RETURN QUERY SELECT 'busy'::text, c.host, c.run_id, NULL::timestamptz;
            RETURN;
        END IF;
    END IF;
    INSERT INTO opsd_claims AS o
            (job, slot, scheduled, definition, host, run_id, attempt, claimed, lease_until)
        VALUES (p_job, p_slot, p_scheduled, p_definition, p_host, p_run, p_attempt, now(), now() + p_lease)
        ON CONFLICT (job, slot) DO UPDATE SET
            definition = EXCLUDED.definition, host = EXCLUDED.host, run_id = EXCLUDED.run_id,
            attempt = EXCLUDED.attempt, claimed = EXCLUDED.claimed,
            lease_until = EXCLUDED.lease_until, ended = NULL, status = NULL,
            earlier = o.earlier || jsonb_build_array(jsonb_build_object(
                'host', o.host, 'run', o.run_id, 'attempt', o.attempt,
                'status', o.status, 'ended', o.ended));
    RETURN QUERY SELECT 'won'::text, p_host, NULL::text, now() + p_lease;
END
$fn$;

-- Takes over a slot whose lease expired with its run unfinished: `won`,
-- or `gone` (another host took it, or it ended), `busy` or `definition`
-- as for a claim.
CREATE FUNCTION opsd_take_over(
    p_job text, p_slot text, p_old_run text, p_definition text,
    p_host text, p_run text, p_lease interval, p_forbid_overlap boolean)
RETURNS TABLE (outcome text, holder text, detail text, until timestamptz)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    fleet_def text;
    fleet_by text;
    c opsd_claims%ROWTYPE;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('opsd job'), hashtext(p_job));
    SELECT * INTO c FROM opsd_claims
        WHERE job = p_job AND slot = p_slot AND run_id = p_old_run
          AND ended IS NULL AND lease_until < now();
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'gone'::text, NULL::text, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    SELECT j.definition, j.defined_by INTO fleet_def, fleet_by
        FROM opsd_jobs j WHERE j.job = p_job;
    IF FOUND AND fleet_def <> p_definition THEN
        RETURN QUERY SELECT 'definition'::text, fleet_by, fleet_def, NULL::timestamptz;
        RETURN;
    END IF;
    IF p_forbid_overlap AND EXISTS (SELECT 1 FROM opsd_claims
            WHERE job = p_job AND ended IS NULL AND lease_until > now() AND slot <> p_slot) THEN
        RETURN QUERY SELECT 'busy'::text, NULL::text, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    UPDATE opsd_claims SET
            host = p_host, run_id = p_run, attempt = c.attempt + 1, claimed = now(),
            lease_until = now() + p_lease, definition = p_definition,
            earlier = earlier || jsonb_build_array(jsonb_build_object(
                'host', c.host, 'run', c.run_id, 'attempt', c.attempt,
                'status', 'lost', 'lease_until', c.lease_until))
        WHERE job = p_job AND slot = p_slot AND run_id = p_old_run AND ended IS NULL;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'gone'::text, NULL::text, NULL::text, NULL::timestamptz;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'won'::text, c.host, c.run_id, now() + p_lease;
END
$fn$;
