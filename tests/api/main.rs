//! Integration tests against the real application (and, for the CLI, the real binary), each on
//! both engines: a fresh SQLite file and a fresh PostgreSQL database.

mod cli;
mod console;
mod helpers;
mod ops;
mod tenancy;
