//! The ClickHouse schema: versioned migrations rendered for the server they run on.
//!
//! Migrations are minijinja templates under `deploy/clickhouse/migrations/`, compiled into the
//! binary. [`Capabilities`] says what the server supports (from `SELECT version()`), and
//! [`render`] turns a template into the DDL that server accepts: modern servers get
//! LowCardinality, IPv6, codecs, TTL and skip indexes; 18.16 gets the plain equivalents with the
//! same columns, order and RowBinary encoding. `migrate` applies what `schema_migrations` does not
//! list yet, so it is idempotent.

mod capabilities;

pub use capabilities::{Capabilities, ServerVersion};

use crate::store::{Store, StoreError};
use sha2::{Digest, Sha256};

/// One migration, as shipped.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub template: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        template: include_str!("../../../deploy/clickhouse/migrations/0001_events.sql"),
    },
    Migration {
        version: 2,
        name: "change_columns",
        template: include_str!("../../../deploy/clickhouse/migrations/0002_change_columns.sql"),
    },
    Migration {
        version: 3,
        name: "inventory",
        template: include_str!("../../../deploy/clickhouse/migrations/0003_inventory.sql"),
    },
    Migration {
        version: 4,
        name: "session_activity",
        template: include_str!("../../../deploy/clickhouse/migrations/0004_session_activity.sql"),
    },
    Migration {
        version: 5,
        name: "findings",
        template: include_str!("../../../deploy/clickhouse/migrations/0005_findings.sql"),
    },
    Migration {
        version: 6,
        name: "trust_policies",
        template: include_str!("../../../deploy/clickhouse/migrations/0006_trust_policies.sql"),
    },
    Migration {
        version: 7,
        name: "event_lookup",
        template: include_str!("../../../deploy/clickhouse/migrations/0007_event_lookup.sql"),
    },
    Migration {
        version: 8,
        name: "event_lookup_input",
        template: include_str!("../../../deploy/clickhouse/migrations/0008_event_lookup_input.sql"),
    },
];

/// What the rendering needs besides capabilities.
#[derive(Debug, Clone, Copy)]
pub struct RenderOptions {
    /// TTL in days for events and dead letters; 0 keeps everything.
    pub retention_days: u32,
}

/// Renders a template into its statements for a server with `caps`.
pub fn render(
    template: &str,
    caps: Capabilities,
    options: RenderOptions,
) -> Result<Vec<String>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_function("codec", move |spec: String| {
        if caps.codecs {
            format!(" CODEC({spec})")
        } else {
            String::new()
        }
    });
    let retention = options.retention_days;
    env.add_function("ttl", move |column: String| {
        if caps.ttl && retention > 0 {
            format!("TTL {column} + INTERVAL {retention} DAY")
        } else {
            String::new()
        }
    });
    let lc = if caps.low_cardinality {
        "LowCardinality(String)"
    } else {
        "String"
    };
    let ipv6 = if caps.ipv6_type {
        "IPv6"
    } else {
        "FixedString(16)"
    };
    let text = env.render_str(
        template,
        minijinja::context! { caps => caps, lc => lc, ipv6 => ipv6 },
    )?;
    Ok(split_statements(&text))
}

/// Splits on `;` at the end of a line, dropping `--` comment lines and empty statements (the
/// templates' comments are for readers of the files, not for the server).
fn split_statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("--") {
            continue;
        }
        let trimmed = line.trim_end();
        if let Some(stmt_end) = trimmed.strip_suffix(';') {
            current.push_str(stmt_end);
            push_statement(&mut out, &current);
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    push_statement(&mut out, &current);
    out
}

fn push_statement(out: &mut Vec<String>, stmt: &str) {
    if !stmt.trim().is_empty() {
        out.push(stmt.trim().to_owned());
    }
}

/// Hex SHA-256 of a template, recorded with the migration.
pub fn checksum(template: &str) -> String {
    hex::encode(Sha256::digest(template.as_bytes()))
}

/// What `migrate` did to each migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub version: u32,
    pub name: &'static str,
    pub applied_now: bool,
}

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    rendered_for String,
    applied_at DateTime('UTC')
)
ENGINE = MergeTree
ORDER BY version";

#[derive(Debug, clickhouse::Row, serde::Serialize, serde::Deserialize)]
struct AppliedMigration {
    version: u32,
    name: String,
    checksum: String,
    rendered_for: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    applied_at: chrono::DateTime<chrono::Utc>,
}

/// Creates the database if needed and applies every migration not yet recorded.
pub async fn migrate(
    store: &Store,
    options: RenderOptions,
) -> Result<Vec<MigrationReport>, StoreError> {
    store.create_database().await?;
    let client = store.client();
    client.query(MIGRATIONS_TABLE).execute().await?;
    let applied: Vec<u32> = client
        .query("SELECT version FROM schema_migrations")
        .fetch_all()
        .await?;
    let version = store.server_version().await?;
    let caps = Capabilities::for_version(version);
    let mut report = Vec::new();
    for m in MIGRATIONS {
        if applied.contains(&m.version) {
            report.push(MigrationReport {
                version: m.version,
                name: m.name,
                applied_now: false,
            });
            continue;
        }
        let statements = render(m.template, caps, options)
            .map_err(|e| StoreError::Template(m.name, e.to_string()))?;
        for stmt in statements {
            client.query(&stmt).execute().await?;
        }
        let mut insert = client
            .insert::<AppliedMigration>("schema_migrations")
            .await?;
        insert
            .write(&AppliedMigration {
                version: m.version,
                name: m.name.to_owned(),
                checksum: checksum(m.template),
                rendered_for: version.to_string(),
                applied_at: chrono::Utc::now(),
            })
            .await?;
        insert.end().await?;
        report.push(MigrationReport {
            version: m.version,
            name: m.name,
            applied_now: true,
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTS: RenderOptions = RenderOptions { retention_days: 30 };

    #[test]
    fn modern_rendering_uses_modern_types() {
        let sql = render(MIGRATIONS[0].template, Capabilities::modern(), OPTS)
            .unwrap()
            .join("\n");
        for want in [
            "LowCardinality(String)",
            "IPv6",
            "CODEC(ZSTD(3))",
            "TTL event_time + INTERVAL 30 DAY",
            "bloom_filter",
        ] {
            assert!(sql.contains(want), "modern DDL lacks {want}");
        }
    }

    #[test]
    fn legacy_rendering_has_nothing_18_16_rejects() {
        let caps = Capabilities::for_version("18.16.1".parse().unwrap());
        let statements = render(MIGRATIONS[0].template, caps, OPTS).unwrap();
        assert_eq!(statements.len(), 3);
        let sql = statements.join("\n");
        for banned in [
            "LowCardinality",
            "IPv6",
            "CODEC",
            "TTL",
            "INDEX",
            "DateTime64",
            "Map(",
        ] {
            assert!(!sql.contains(banned), "legacy DDL contains {banned}");
        }
        assert!(sql.contains("FixedString(16)"));
    }

    #[test]
    fn statements_split_on_line_end_semicolons_only() {
        let s = split_statements("-- c;\nSELECT 'a;b';\n\nSELECT 2;\n-- trailing\n");
        assert_eq!(s, vec!["SELECT 'a;b'", "SELECT 2"]);
    }
}
