//! Integration tests against the real application (and, for the CLI, the real binary), each on
//! both engines: a fresh SQLite file and a fresh PostgreSQL database.

// A failed assumption in a test is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod agents;
mod approvals;
mod audit;
mod audit_ops;
mod cli;
mod conformance;
mod connections;
mod console;
mod deploy;
mod durability;
mod failover;
mod filters;
mod gateway;
mod gateway_sessions;
mod helpers;
mod injection;
mod limits;
mod mail;
mod oauth;
mod ops;
mod pins;
mod real_clients;
mod replicas;
mod review;
mod scim;
mod servers;
mod sso;
mod tenancy;
mod tokens;
mod vault;
