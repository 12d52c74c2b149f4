DROP TABLE publish_follows;
DROP TABLE paused_flows;
DROP TABLE replay_letters;
DROP TABLE replays;
