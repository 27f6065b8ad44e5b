//! Integration tests: one test binary over the production app (in-process and on real sockets)
//! and the real `lightbase` binary.

mod common;

mod aggregate;
mod auth;
mod auth_providers;
mod bad_input;
mod cli;
mod cloudapi;
mod durability;
mod gateway;
mod geo;
mod indexes;
mod layering;
mod lifecycle;
mod permissions;
mod ratelimit;
mod schema;
mod transactions;
