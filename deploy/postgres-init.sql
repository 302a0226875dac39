-- Session table of the docker-compose demo: the schema of Tomcat's JDBCStore / DataSourceStore
-- (sessionTable="tomcat_sessions"). The demo nodes keep their session attributes as JSON in
-- session_data. Run once by the postgres image from /docker-entrypoint-initdb.d/.
CREATE TABLE IF NOT EXISTS tomcat_sessions (
    session_id   VARCHAR(100) NOT NULL PRIMARY KEY,
    valid_session CHAR(1)     NOT NULL,
    max_inactive INT          NOT NULL,
    last_access  BIGINT       NOT NULL,
    app_name     VARCHAR(255),
    session_data BYTEA
);
