//! The city store on PostgreSQL: a schema made for the data office (one
//! table per record kind with typed columns, the change log, replication
//! state, conflicts, quarantine, audit) and its versioned migrations.
//!
//! The client is tokio-postgres: asynchronous like the rest of the city,
//! no database needed to compile (sqlx's checked queries need one), and
//! pipelined statements and binary COPY for bulk loads.

mod schema;

pub use schema::{LATEST, SchemaError, migrate};
