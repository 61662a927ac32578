"""A small database that looks like an application's: several schemas, types, a few thousand rows."""

SEED_SQL = """
CREATE SCHEMA app;
CREATE SCHEMA billing;
CREATE TABLE app.users (
    id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, profile jsonb, created_at timestamptz DEFAULT now()
);
INSERT INTO app.users (email, profile)
SELECT 'user' || g || '@example.com', jsonb_build_object('n', g, 'bio', repeat(md5(g::text), g % 5))
FROM generate_series(1, 3000) g;
CREATE TABLE app.events (id bigserial PRIMARY KEY, user_id bigint REFERENCES app.users(id), payload bytea, at timestamptz);
INSERT INTO app.events (user_id, payload, at)
SELECT 1 + g % 3000, decode(md5(g::text), 'hex'), now() - g * interval '1 minute' FROM generate_series(1, 2500) g;
CREATE TABLE billing.invoices (id int PRIMARY KEY, amount numeric(12, 2), note text);
INSERT INTO billing.invoices SELECT g, g * 1.25, CASE WHEN g % 7 = 0 THEN NULL ELSE 'n' || g END
FROM generate_series(1, 1200) g;
CREATE TABLE public.empty_table (id int);
CREATE VIEW app.active_users AS SELECT id, email FROM app.users WHERE id % 2 = 0;
"""

SEED_COUNTS = {
    "app.users": 3000,
    "app.events": 2500,
    "billing.invoices": 1200,
    "public.empty_table": 0,
}
