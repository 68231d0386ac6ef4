#!/bin/bash
# Creates Keycloak's own role and database next to jitbridge's (POSTGRES_DB).
# Run by the postgres image on the FIRST start only (empty data volume).
# The password comes from KEYCLOAK_DB_PASSWORD in the container's environment and is passed to
# psql as a variable, so it is quoted by psql (:'kc_password') rather than spliced into SQL.
set -euo pipefail

: "${KEYCLOAK_DB_PASSWORD:?KEYCLOAK_DB_PASSWORD must be set for the postgres container}"

psql -v ON_ERROR_STOP=1 \
     --username "$POSTGRES_USER" \
     --dbname "$POSTGRES_DB" \
     --set kc_password="$KEYCLOAK_DB_PASSWORD" \
     --set app_db="$POSTGRES_DB" <<'EOSQL'
CREATE ROLE keycloak WITH LOGIN PASSWORD :'kc_password';
CREATE DATABASE keycloak OWNER keycloak;
-- Each service connects to its own database only.
REVOKE ALL ON DATABASE keycloak FROM PUBLIC;
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
EOSQL
