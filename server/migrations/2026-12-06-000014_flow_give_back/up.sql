-- Subscribe flows on a queue that give a message back to the queue when
-- their model fails transiently, rather than retry it in place.
CREATE TABLE flow_give_back (
    flow_id TEXT PRIMARY KEY NOT NULL
);
