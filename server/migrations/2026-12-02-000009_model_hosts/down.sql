DROP TABLE model_hosts;
