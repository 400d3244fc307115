#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
#
# Two roles instead of the superuser for the app:
#   bastion_owner  owns the database and schema; used only by `migrate` (DDL)
#   bastion_app    used by the running app: data access only, cannot change the schema
# Passwords come from secret files and reach psql on standard input, not its command line.
set -eu

owner_password=$(cat /run/secrets/postgres_owner_password)
app_password=$(cat /run/secrets/postgres_app_password)

{
    printf '\\set owner_password %s\n' "$owner_password"
    printf '\\set app_password %s\n' "$app_password"
    cat <<'SQL'
CREATE ROLE bastion_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE bastion_app LOGIN PASSWORD :'app_password';
CREATE DATABASE bastion OWNER bastion_owner;
\connect bastion
REVOKE ALL ON DATABASE bastion FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE bastion TO bastion_app;
ALTER SCHEMA public OWNER TO bastion_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO bastion_app;
ALTER DEFAULT PRIVILEGES FOR ROLE bastion_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO bastion_app;
ALTER DEFAULT PRIVILEGES FOR ROLE bastion_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO bastion_app;
SQL
} | psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres
