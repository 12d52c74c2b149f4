//! Integration tests: each test gets a fresh database (SQLite, or PostgreSQL
//! when EVENTFLOWS_TEST_DATABASE=postgres), talks to the real router, and
//! where Kafka is involved, to a real tansu broker.

mod audit;
mod auth;
mod brokers;
mod cli;
mod crash;
mod failures;
mod faults;
mod flows;
mod kafka;
mod keys;
mod ordering;
mod outage;
mod replay;
mod rewind;
mod roles;
mod scale;
mod secrets;
mod security;
mod servicebus;
mod sqs;
mod support;
mod web;
