//! Versioned migrations: each applied once, in order, in a transaction
//! that also records it in `schema_version`. A database whose schema is
//! newer than this build knows is refused with a clear message: an older
//! wardsync must never write to a schema it does not understand.

use tokio_postgres::Client;

/// The migrations, in order: version, what it does, the SQL.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "records by kind, change log, replication state, conflicts, quarantine, audit",
        include_str!("migrations/0001_schema.sql"),
    ),
    (
        2,
        "each ward's daily budget, and where its numbering moved on its word",
        include_str!("migrations/0002_ward_claims.sql"),
    ),
    (3, "each ward's chain as applied, and the forks found", include_str!("migrations/0003_chains.sql")),
    (
        4,
        "batches as their wards signed them, and the keys that signed them",
        include_str!("migrations/0004_evidence.sql"),
    ),
    (
        5,
        "office requests as the office signed them, and registrations as their wards signed them",
        include_str!("migrations/0005_office_requests.sql"),
    ),
    (
        6,
        "what each write by another given back in a repair was taken on",
        include_str!("migrations/0006_relayed_writes.sql"),
    ),
];

/// The newest schema version this build knows.
pub const LATEST: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The database was migrated by a newer wardsync.
    #[error(
        "the database's schema is version {found}, newer than this wardsync knows ({LATEST}): \
         run the newer wardsync, or point `[database] url` at another database"
    )]
    Newer {
        /// The version found.
        found: i32,
    },
    /// PostgreSQL refused a statement.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A log entry could not be read while computing the running hash.
    #[error("the change log cannot be read: {0}")]
    Log(String),
}

/// Applies the migrations the database lacks; returns the schema version.
/// Concurrent callers (city processes starting together) serialise on an
/// advisory lock.
pub async fn migrate(client: &mut Client) -> Result<i32, SchemaError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(7031002)", &[]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    integer PRIMARY KEY,
             what       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let found: i32 = tx.query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[]).await?.get(0);
    if found > LATEST {
        return Err(SchemaError::Newer { found });
    }
    for (version, what, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v > found) {
        tx.batch_execute(sql).await?;
        tx.execute("INSERT INTO schema_version (version, what) VALUES ($1, $2)", &[version, what]).await?;
        tracing::info!(version, what, "database schema migrated");
    }
    running_of_log(&tx).await?;
    // The database's id, made once (see `CityDb::city_id`).
    let id: [u8; 16] = ring::rand::generate(&ring::rand::SystemRandom::new())
        .map_err(|_| SchemaError::Log("no randomness for the city's id".into()))?
        .expose();
    tx.execute("UPDATE city_clock SET city_id = $1 WHERE id = 1 AND city_id IS NULL", &[&&id[..]]).await?;
    tx.commit().await?;
    Ok(LATEST)
}

/// Sets the log's running hash of a database written before it was kept,
/// computed from its log (once: then every write keeps it).
async fn running_of_log(tx: &tokio_postgres::Transaction<'_>) -> Result<(), SchemaError> {
    let kept: Option<Vec<u8>> =
        tx.query_one("SELECT running FROM city_clock WHERE id = 1", &[]).await?.get(0);
    if kept.is_some() {
        return Ok(());
    }
    let (mut running, mut after) = (crate::model::signed::GENESIS, 0i64);
    loop {
        let rows = tx
            .query(
                "SELECT cursor, entry FROM change_log WHERE cursor > $1 ORDER BY cursor LIMIT 1000",
                &[&after],
            )
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.get(0);
        for row in &rows {
            let logged: crate::store::LoggedChange =
                crate::store::codec::decode(b"change_log.entry", row.get(1))
                    .map_err(|e| SchemaError::Log(e.to_string()))?;
            running = logged.running_after(&running);
        }
    }
    tx.execute("UPDATE city_clock SET running = $1 WHERE id = 1", &[&&running[..]]).await?;
    Ok(())
}
