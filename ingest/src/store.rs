//! The connection to ClickHouse, shared by the sink, migrations and the read path.
//!
//! Settings that keep one client working on 18.16 and modern servers alike: no row validation
//! (18.16 lacks `RowBinaryWithNamesAndTypes`), no response compression (18.16 answers compressed
//! requests with empty bodies), client-side `bind` only (no server-side parameters on 18.16).

use crate::config::Config;
use crate::schema::ServerVersion;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("migration {0}: template error: {1}")]
    Template(&'static str, String),
    #[error("server version: {0}")]
    Version(String),
}

/// A configured ClickHouse client for one database.
#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
    /// The same server without a default database (to create it).
    server: clickhouse::Client,
    database: String,
}

impl Store {
    pub fn new(config: &Config) -> Result<Store, StoreError> {
        let ch = &config.clickhouse;
        let password = config.clickhouse_password()?;
        let server = clickhouse::Client::default()
            .with_url(&ch.url)
            .with_user(&ch.user)
            .with_password(password)
            .with_compression(clickhouse::Compression::None)
            .with_validation(false)
            .with_setting("max_execution_time", ch.request_timeout_secs.to_string());
        Ok(Store {
            client: server.clone().with_database(&ch.database),
            server,
            database: ch.database.clone(),
        })
    }

    /// The client bound to credtrail's database.
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub async fn create_database(&self) -> Result<(), StoreError> {
        // The name was checked to be a plain identifier by config validation.
        let sql = format!("CREATE DATABASE IF NOT EXISTS {}", self.database);
        self.server.query(&sql).execute().await?;
        Ok(())
    }

    pub async fn server_version(&self) -> Result<ServerVersion, StoreError> {
        let v: String = self.server.query("SELECT version()").fetch_one().await?;
        v.parse().map_err(StoreError::Version)
    }

    /// Whether the server answers and the schema is migrated (for readiness).
    pub async fn ready(&self) -> Result<(), StoreError> {
        let fut = self
            .client
            .query("SELECT count() FROM schema_migrations")
            .fetch_one::<u64>();
        match tokio::time::timeout(Duration::from_secs(2), fut).await {
            Ok(r) => r.map(|_| ()).map_err(Into::into),
            Err(_) => Err(StoreError::Version("timed out".into())),
        }
    }
}
