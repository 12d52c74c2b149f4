//! The Event Flows server: configuration, storage, services and the HTTP app.

pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod http;
pub mod kafka;
pub mod runner;
pub mod secrets;
pub mod servicebus;
pub mod services;
pub mod sqs;
pub mod testing;
