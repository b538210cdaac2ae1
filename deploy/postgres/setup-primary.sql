-- Roles, database and PostGIS on the primary, once, as the postgres superuser:
--   sudo -u postgres psql -v geo_password=... -v replicator_password=... \
--        -f deploy/postgres/setup-primary.sql
-- then, as geo (the service's role: owns the tables, no superuser):
--   GEO_SERVICE_DATABASE_URL=postgresql://geo:...@db-primary.internal/geo geo-service db migrate
--   ... geo-service db load data/
\set ON_ERROR_STOP on
CREATE ROLE geo LOGIN PASSWORD :'geo_password';
CREATE ROLE replicator REPLICATION LOGIN PASSWORD :'replicator_password';
CREATE DATABASE geo OWNER geo ENCODING 'UTF8' TEMPLATE template0;
\connect geo
-- Only a superuser may create PostGIS; geo-service db migrate then finds it there.
CREATE EXTENSION IF NOT EXISTS postgis;
