//! The connection to ClickHouse, shared by the sink, migrations and the read path.
//!
//! Settings that keep one client working on 18.16 and modern servers alike: no row validation
//! (18.16 lacks `RowBinaryWithNamesAndTypes`), no response compression (18.16 answers compressed
//! requests with empty bodies), client-side `bind` only (no server-side parameters on 18.16).
//!
//! One request the clickhouse crate cannot send: a query with a list of keys attached as HTTP
//! "external data" ([`Store::fetch_keys_in`]), which the sink's dedup lookup needs to stay cheap.

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
    #[error("clickhouse: {0}")]
    Request(String),
}

/// Keys sent beside a query as a one-column table the query reads by `name`, e.g.
/// `WHERE dedup_key IN flush_keys`.
///
/// Why not bind them into the SQL: 18.16 spends about 5 µs of CPU parsing each literal of an
/// `IN (...)` list, which made the dedup lookup a fifth of the server's work per event. Sent as
/// RowBinary external data, 100,000 keys cost it about 30 ms.
#[derive(Debug, Clone, Copy)]
pub struct KeyTable<'a> {
    pub name: &'a str,
    pub column: &'a str,
    pub keys: &'a [u64],
}

/// A configured ClickHouse client for one database.
#[derive(Clone)]
pub struct Store {
    client: clickhouse::Client,
    /// The same server without a default database (to create it).
    server: clickhouse::Client,
    database: String,
    /// For [`Store::fetch_keys_in`]: the crate has no external data.
    http: reqwest::Client,
    url: String,
    user: String,
    password: String,
    timeout_secs: u64,
}

impl Store {
    pub fn new(config: &Config) -> Result<Store, StoreError> {
        let ch = &config.clickhouse;
        let password = config.clickhouse_password()?;
        let server = clickhouse::Client::default()
            .with_url(&ch.url)
            .with_user(&ch.user)
            .with_password(password.clone())
            .with_compression(clickhouse::Compression::None)
            .with_validation(false)
            .with_setting("max_execution_time", ch.request_timeout_secs.to_string());
        Ok(Store {
            client: server.clone().with_database(&ch.database),
            server,
            database: ch.database.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(ch.request_timeout_secs + 5))
                .build()
                .map_err(|e| StoreError::Request(e.to_string()))?,
            url: ch.url.clone(),
            user: ch.user.clone(),
            password,
            timeout_secs: ch.request_timeout_secs,
        })
    }

    /// Runs `sql`, whose result is one `UInt64` column, with `table` attached as external data.
    pub async fn fetch_keys_in(
        &self,
        sql: &str,
        table: KeyTable<'_>,
    ) -> Result<Vec<u64>, StoreError> {
        let rows: Vec<u8> = table.keys.iter().flat_map(|k| k.to_le_bytes()).collect();
        let form = reqwest::multipart::Form::new().part(
            table.name.to_owned(),
            reqwest::multipart::Part::bytes(rows).file_name(table.name.to_owned()),
        );
        let structure = format!("{} UInt64", table.column);
        let query = format!("{sql} FORMAT RowBinary");
        let timeout = self.timeout_secs.to_string();
        let (format_key, structure_key) = (
            format!("{}_format", table.name),
            format!("{}_structure", table.name),
        );
        let response = self
            .http
            .post(&self.url)
            .header("X-ClickHouse-User", &self.user)
            .header("X-ClickHouse-Key", &self.password)
            .query(&[
                ("database", self.database.as_str()),
                ("query", query.as_str()),
                (format_key.as_str(), "RowBinary"),
                (structure_key.as_str(), structure.as_str()),
                ("max_execution_time", timeout.as_str()),
                // The whole answer before the status: an error cannot follow a 200.
                ("wait_end_of_query", "1"),
            ])
            .multipart(form)
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        let body = response.bytes().await.map_err(request_error)?;
        if !status.is_success() {
            return Err(StoreError::Request(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        if body.len() % 8 != 0 {
            return Err(StoreError::Request(format!(
                "a UInt64 answer of {} bytes",
                body.len()
            )));
        }
        Ok(body
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect())
    }

    /// The client bound to credtrail's database.
    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    /// Inserts rows in one RowBinary INSERT (nothing when there are none).
    #[tracing::instrument(
        name = "clickhouse.insert",
        skip_all,
        fields(table = %table, rows = rows.len())
    )]
    pub async fn insert_rows<T>(
        &self,
        table: &str,
        rows: &[&T],
    ) -> Result<(), clickhouse::error::Error>
    where
        T: clickhouse::Row + clickhouse::RowWrite + serde::Serialize,
        for<'a> T: clickhouse::Row<Value<'a> = T>,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
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

/// A transport error with its causes (e.g. "connection refused"), without the URL: it holds the
/// whole query.
fn request_error(e: reqwest::Error) -> StoreError {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    StoreError::Request(message)
}
