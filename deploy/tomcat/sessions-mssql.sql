-- The session table of Tomcat's DataSourceStore (Tomcat 10+) / JDBCStore (Tomcat 9), Microsoft
-- SQL Server.
IF OBJECT_ID(N'tomcat_sessions', N'U') IS NULL
BEGIN
    CREATE TABLE tomcat_sessions (
        session_id    VARCHAR(100)   NOT NULL PRIMARY KEY,
        valid_session CHAR(1)        NOT NULL,
        max_inactive  INT            NOT NULL,
        last_access   BIGINT         NOT NULL,
        app_name      VARCHAR(255)   NULL,
        session_data  VARBINARY(MAX) NULL
    );
    CREATE INDEX tomcat_sessions_app_name ON tomcat_sessions (app_name);
END;
