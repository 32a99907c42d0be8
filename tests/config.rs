//! `credtrail validate` and the documented configuration surface.

mod support;

use std::process::Command;
use support::{BIN, repo_root};

fn validate(text: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credtrail.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("validate").arg(&path);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CREDTRAIL_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn validate_reports_every_error_with_its_key_path() {
    let (ok, out) = validate(
        r#"
        [clickhouse]
        url = "clickhouse:9000"
        database = "bad-name"
        retention_days = -1
        [sink]
        batch_max_rows = 0
        flush_interval_ms = "soon"
        [http]
        listen = "everywhere"
        tls_cert_file = "/nonexistent/cert.pem"
        colour = "blue"
        "#,
        &[],
    );
    assert!(!ok);
    for key in [
        "clickhouse.url:",
        "clickhouse.database:",
        "clickhouse.retention_days:",
        "sink.batch_max_rows:",
        "sink.flush_interval_ms:",
        "http.listen:",
        "http.tls_cert_file:",
        "http.tls_key_file:",
        "http.colour:",
    ] {
        assert!(
            out.contains(&format!("error: {key}")),
            "{key} missing:\n{out}"
        );
    }
    assert!(out.trim_end().ends_with("9 error(s)"), "{out}");
}

#[test]
fn a_good_file_validates_and_env_overrides_apply() {
    let (ok, out) = validate(
        "[http]\nallow_unauthenticated = true\n",
        &[("CREDTRAIL_SINK_BATCH_MAX_ROWS", "0")],
    );
    assert!(!ok, "the override is validated too:\n{out}");
    assert!(out.contains("error: sink.batch_max_rows:"), "{out}");
    let (ok, out) = validate("[http]\nallow_unauthenticated = true\n", &[]);
    assert!(ok, "{out}");
    assert_eq!(out, "ok\n");
}

#[test]
fn readme_documents_every_key_and_its_override() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--list-keys"])
        .output()
        .unwrap();
    let keys = String::from_utf8(out.stdout).unwrap();
    assert!(keys.lines().count() >= 20);
    for line in keys.lines() {
        let mut cols = line.split_whitespace();
        let (key, env) = (cols.next().unwrap(), cols.next().unwrap());
        assert!(readme.contains(&format!("`{key}`")), "README lacks `{key}`");
        assert!(readme.contains(&format!("`{env}`")), "README lacks `{env}`");
    }
}

#[test]
fn example_configuration_is_valid_but_for_its_secret_files() {
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(repo_root().join("deploy/credtrail.example.toml")).unwrap();
    // Point the secret files somewhere real: then nothing else may be wrong with it.
    let mut text = example.clone();
    for (from, name) in [
        ("/run/secrets/clickhouse", "ch"),
        ("/run/secrets/collector-tokens", "tokens"),
        ("/run/secrets/kafka", "kafka"),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, "secret\n").unwrap();
        text = text.replace(from, &file.display().to_string());
    }
    let (ok, out) = validate(&text, &[]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "ok");
    let (ok, out) = validate(&example, &[]);
    assert!(!ok);
    assert!(out.contains("kafka.sasl_password_file:"), "{out}");
}

#[test]
fn credentials_in_the_clickhouse_url_are_refused() {
    let (ok, out) = validate(
        "[clickhouse]\nurl = \"http://writer:s3cret@127.0.0.1:8123\"\n[http]\nallow_unauthenticated = true\n",
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("error: clickhouse.url: must not hold credentials"),
        "{out}"
    );
    assert!(
        !out.contains("s3cret"),
        "the error does not repeat the password: {out}"
    );
}
