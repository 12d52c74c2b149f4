#![recursion_limit = "256"]
//! Event Flows user interface and the server functions it calls.
//!
//! `domain` holds the wasm-safe types shared by the browser and the server;
//! `api` the server functions (thin: who is calling, validate, call the
//! [`api::Backend`] the server provides, map the error); `pages` and
//! `components` the Leptos views.

pub mod api;
pub mod components;
pub mod domain;
pub mod pages;

mod shell;

pub use shell::App;
