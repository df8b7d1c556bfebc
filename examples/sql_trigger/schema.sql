-- A signups table; each new row enqueues a welcome e-mail in the same transaction.
-- {schema} is pgqueue's schema (run.py fills it in).
CREATE TABLE IF NOT EXISTS example_signups (
    id bigserial PRIMARY KEY,
    email text NOT NULL
);

CREATE OR REPLACE FUNCTION example_signups_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM "{schema}".enqueue(
        'welcome.send',
        jsonb_build_object('signup_id', NEW.id, 'email', NEW.email),
        queue => 'emails',
        dedupe_key => 'welcome:' || NEW.email   -- one welcome per address while pending
    );
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS example_signups_enqueue ON example_signups;
CREATE TRIGGER example_signups_enqueue AFTER INSERT ON example_signups
FOR EACH ROW EXECUTE FUNCTION example_signups_enqueue();
