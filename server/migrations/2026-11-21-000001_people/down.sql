DROP TABLE sessions;
DROP TABLE algorithm_versions;
DROP TABLE algorithms;
DROP TABLE memberships;
DROP TABLE organizations;
DROP TABLE users;
