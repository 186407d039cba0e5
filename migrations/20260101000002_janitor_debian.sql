-- Debian build results (the upstream debian.sql). Needs the debversion extension, shipped by
-- the postgresql-NN-debversion package.
CREATE EXTENSION IF NOT EXISTS debversion;

CREATE TABLE debian_build (
    run_id text NOT NULL,
    version debversion NOT NULL,
    distribution text NOT NULL,
    source text NOT NULL,
    binary_packages text[],
    lintian_result json,
    CONSTRAINT debian_build_run_id_fkey FOREIGN KEY (run_id) REFERENCES run (id)
);
CREATE INDEX debian_build_run_id_idx ON debian_build (run_id);
CREATE INDEX debian_build_distribution_source_version_idx
    ON debian_build (distribution, source, version);
