-- The session table of Tomcat's DataSourceStore (Tomcat 10+) / JDBCStore (Tomcat 9), PostgreSQL.
-- Table and column names are the ones context-datasourcestore.xml / context-jdbcstore.xml name
-- (sessionTable, sessionIdCol, ...). Session ids end in ".<jvmRoute>": 100 characters are ample.
CREATE TABLE IF NOT EXISTS tomcat_sessions (
    session_id    VARCHAR(100) NOT NULL PRIMARY KEY,
    valid_session CHAR(1)      NOT NULL,
    max_inactive  INT          NOT NULL,
    last_access   BIGINT       NOT NULL,
    app_name      VARCHAR(255),
    session_data  BYTEA
);
CREATE INDEX IF NOT EXISTS tomcat_sessions_app_name ON tomcat_sessions (app_name);
