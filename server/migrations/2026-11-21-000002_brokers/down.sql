DROP TABLE flows;
DROP TABLE topic_grants;
DROP TABLE broker_connections;
