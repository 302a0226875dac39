-- The session table of Tomcat's DataSourceStore (Tomcat 10+) / JDBCStore (Tomcat 9), MySQL and
-- MariaDB. MEDIUMBLOB holds up to 16 MiB of serialized session; BLOB (64 KiB) is often too small.
CREATE TABLE IF NOT EXISTS tomcat_sessions (
    session_id    VARCHAR(100) NOT NULL PRIMARY KEY,
    valid_session CHAR(1)      NOT NULL,
    max_inactive  INT          NOT NULL,
    last_access   BIGINT       NOT NULL,
    app_name      VARCHAR(255),
    session_data  MEDIUMBLOB,
    KEY tomcat_sessions_app_name (app_name)
) ENGINE = InnoDB;
