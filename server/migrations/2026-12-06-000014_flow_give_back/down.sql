DROP TABLE flow_give_back;
