//! Integration tests: each test gets a fresh database (SQLite, or PostgreSQL
//! when EVENTFLOWS_TEST_DATABASE=postgres) and talks to the real router.

mod auth;
mod cli;
mod support;
mod web;
