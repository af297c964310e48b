//! Portcullis server: tenant routing by host, the consoles (Leptos SSR), the JSON API, the
//! store and the operator CLI. `main.rs` only parses the command line and calls in here.
//! ARCHITECTURE.md maps the modules.

pub mod access;
pub mod agents;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connections;
pub mod console;
pub mod domain;
pub mod error;
pub mod filters;
pub mod gateway;
pub mod keys;
pub mod mail;
pub mod oauth;
pub mod ops;
pub mod pins;
pub mod policy;
pub mod review;
pub mod scim;
pub mod servers;
pub mod sso;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tenancy;
pub mod tenants;
pub mod vault;
