//! Test harness: real services on free loopback ports in temporary directories, stopped by PID
//! when the test ends, plus helpers to run the `credtrail` binary against them.
//!
//! `CLICKHOUSE_URL` points the tests at an existing server instead of starting one; each test
//! still gets its own database.
#![allow(dead_code)]

pub mod grafana;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_credtrail");

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A ClickHouse server for one test (or a database on `CLICKHOUSE_URL`).
pub struct ClickHouse {
    pub url: String,
    pub database: String,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    http_port: u16,
}

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

impl ClickHouse {
    pub fn start() -> ClickHouse {
        let database = format!(
            "credtrail_t{}_{}",
            std::process::id(),
            DB_COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        if let Ok(url) = std::env::var("CLICKHOUSE_URL") {
            return ClickHouse {
                url,
                database,
                child: None,
                dir: None,
                http_port: 0,
            };
        }
        let server = Path::new("/usr/sbin/clickhouse-server");
        assert!(
            server.exists(),
            "ClickHouse is not installed: run `deploy/clickhouse/local.sh install` (or tests/run.sh), or set CLICKHOUSE_URL"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let http_port = free_port();
        let mut ch = ClickHouse {
            url: format!("http://127.0.0.1:{http_port}"),
            database,
            child: None,
            dir: Some(dir),
            http_port,
        };
        ch.spawn();
        ch
    }

    /// Starts the private server. `free_port` can hand one port to two processes at once (tests
    /// run in parallel), so a server that exits or stays silent is stopped and started again on
    /// new ports, up to three times.
    fn spawn(&mut self) {
        for attempt in 0..3 {
            if attempt > 0 {
                self.http_port = free_port();
                self.url = format!("http://127.0.0.1:{}", self.http_port);
            }
            if self.try_spawn() {
                return;
            }
        }
        panic!(
            "clickhouse-server did not start on three tries (last {})",
            self.url
        );
    }

    /// One start; true once the server answers its own port.
    fn try_spawn(&mut self) -> bool {
        let dir = self.dir.as_ref().expect("own server").path();
        let template =
            std::fs::read_to_string(repo_root().join("deploy/clickhouse/server-config.xml"))
                .expect("server config template");
        let config = template
            .replace("@DIR@", &dir.display().to_string())
            .replace("@HTTP_PORT@", &self.http_port.to_string())
            .replace("@TCP_PORT@", &free_port().to_string());
        std::fs::write(dir.join("config.xml"), config).unwrap();
        std::fs::copy(
            repo_root().join("deploy/clickhouse/users.xml"),
            dir.join("users.xml"),
        )
        .unwrap();
        let mut child = Command::new("/usr/sbin/clickhouse-server")
            .arg(format!(
                "--config-file={}",
                dir.join("config.xml").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clickhouse-server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = agent().get(format!("{}/ping", self.url)).call()
                && r.status() == 200
            {
                self.child = Some(child);
                return true;
            }
            if matches!(child.try_wait(), Ok(Some(_))) {
                return false; // exited: most likely a port taken meanwhile
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Stops the server (SIGTERM, then SIGKILL), keeping its data for [`ClickHouse::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        assert!(
            self.dir.is_some(),
            "restart needs a server this test started"
        );
        self.stop();
        self.spawn();
    }

    /// The server's PID when this test started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_own(&self) -> bool {
        self.dir.is_some()
    }

    /// Runs SQL in the test's database and returns the body (TabSeparated unless the SQL says).
    pub fn query(&self, sql: &str) -> String {
        self.query_with(sql, "")
    }

    /// [`ClickHouse::query`] with URL settings (`&name=value...`).
    pub fn query_with(&self, sql: &str, settings: &str) -> String {
        let mut r = agent()
            .post(format!(
                "{}/?database={}{settings}",
                self.url, self.database
            ))
            .send(sql)
            .expect("clickhouse request");
        let body = r.body_mut().read_to_string().expect("utf-8 body");
        assert_eq!(r.status(), 200, "query failed: {sql}\n{body}");
        body
    }

    pub fn query_bytes(&self, sql: &str) -> Vec<u8> {
        let mut r = agent()
            .post(format!("{}/?database={}", self.url, self.database))
            .send(sql)
            .expect("clickhouse request");
        assert_eq!(r.status(), 200, "query failed: {sql}");
        r.body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .expect("body")
    }

    pub fn count(&self, sql: &str) -> u64 {
        self.query(sql).trim().parse().expect("a count")
    }

    /// Environment for `credtrail` pointing at this server and database.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CREDTRAIL_CLICKHOUSE_URL".into(), self.url.clone()),
            (
                "CREDTRAIL_CLICKHOUSE_DATABASE".into(),
                self.database.clone(),
            ),
            ("CREDTRAIL_LOG".into(), "warn".into()),
        ]
    }

    /// `credtrail ARGS` against this server, waited for.
    pub fn credtrail(&self, args: &[&str]) -> Output {
        self.credtrail_with(args, &[])
    }

    pub fn credtrail_with(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .envs(self.env())
            .env_remove("CREDTRAIL_CONFIG");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.output().expect("run credtrail")
    }

    /// `credtrail ARGS`, asserting success, returning stdout.
    pub fn credtrail_ok(&self, args: &[&str]) -> String {
        let out = self.credtrail(args);
        assert!(
            out.status.success(),
            "credtrail {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    pub fn migrate(&self) {
        self.credtrail_ok(&["migrate"]);
    }

    /// Drops the database and migrates it again: empty tables.
    pub fn reset(&self) {
        agent()
            .post(format!("{}/", self.url))
            .send(format!("DROP DATABASE IF EXISTS {}", self.database))
            .expect("drop database");
        self.migrate();
    }

    /// A rule's test case (files beside the rule in `rule_dir`): its inventory and trust
    /// policies, valid since 2000, then its events.
    pub fn load_rule_case(&self, rule_dir: &Path, case: &credtrail_query::detect::rule::Case) {
        let at =
            |names: &[String]| -> Vec<PathBuf> { names.iter().map(|n| rule_dir.join(n)).collect() };
        let since = "2000-01-01T00:00:00Z";
        if !case.inventory.is_empty() {
            let import = [
                "inventory",
                "import",
                "--no-reattribute",
                "--valid-from",
                since,
            ];
            self.credtrail_files(&import, &at(&case.inventory));
        }
        if !case.trust.is_empty() {
            let trust = ["inventory", "trust", "--valid-from", since];
            self.credtrail_files(&trust, &at(&case.trust));
        }
        if !case.events.is_empty() {
            self.credtrail_files(&["replay"], &at(&case.events));
        }
    }

    /// `credtrail SUBCOMMAND... FILE...`, asserting success.
    pub fn credtrail_files(&self, args: &[&str], files: &[PathBuf]) -> String {
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(files.iter().map(String::as_str));
        self.credtrail_ok(&all)
    }

    /// A generated scenario as the forensic tests use it: `credtrail generate` with `args` from
    /// 2024-07-08 (inventory and trust policies valid since 2000), its files replayed, every
    /// rule evaluated over the judged days. Returns the scenario folder and `expected.json`.
    pub fn judged_scenario(&self, args: &[&str]) -> (tempfile::TempDir, serde_json::Value) {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec!["--start", "2024-07-08T00:00:00Z"];
        all.extend_from_slice(args);
        let expected = self.generate(dir.path(), &all, "2000-01-01T00:00:00Z");
        self.credtrail_files(
            &["replay"],
            &credtrail_scenario::Scenario::data_files(dir.path()),
        );
        let since = expected["judged_since"].as_str().unwrap();
        let until = expected["judged_until"].as_str().unwrap();
        self.credtrail_ok(&["detect", "--since", since, "--until", until, "--no-settle"]);
        (dir, expected)
    }

    /// `credtrail generate --out DIR ARGS...` then its inventory and trust policies imported
    /// (valid since `valid_from`); returns `expected.json`. The data files are not sent.
    pub fn generate(&self, dir: &Path, args: &[&str], valid_from: &str) -> serde_json::Value {
        let mut all = vec!["generate", "--out", dir.to_str().unwrap()];
        all.extend_from_slice(args);
        println!("{}", self.credtrail_ok(&all).trim());
        self.import_scenario(dir, valid_from);
        let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// A generated scenario's inventory and trust policies, imported as valid since `valid_from`.
    pub fn import_scenario(&self, dir: &Path, valid_from: &str) {
        let inventory = [dir.join("inventory.toml")];
        let import = [
            "inventory",
            "import",
            "--no-reattribute",
            "--valid-from",
            valid_from,
        ];
        self.credtrail_files(&import, &inventory);
        let trust = credtrail_scenario::Scenario::trust_files(dir);
        self.credtrail_files(&["inventory", "trust", "--valid-from", valid_from], &trust);
    }

    /// `credtrail detect` over `[since, until)` for one rule (or every rule), no settling.
    pub fn detect(&self, since: &str, until: &str, rule: Option<&str>) -> String {
        let mut args = vec!["detect", "--since", since, "--until", until, "--no-settle"];
        if let Some(rule) = rule {
            args.extend(["--rule", rule]);
        }
        self.credtrail_ok(&args)
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        } else if !self.is_own() {
            // A shared server: leave it as we found it.
            let _ = agent()
                .post(format!("{}/", self.url))
                .send(format!("DROP DATABASE IF EXISTS {}", self.database));
        }
    }
}

/// A running `credtrail ingest`, stopped by PID on drop.
pub struct Collector {
    pub url: String,
    child: Child,
}

impl Collector {
    pub fn start(ch: &ClickHouse, extra_env: &[(&str, &str)]) -> Collector {
        Collector::start_logging(ch, extra_env, Stdio::inherit())
    }

    /// [`Collector::start`] with its log (stderr) sent to `log`.
    pub fn start_logging(ch: &ClickHouse, extra_env: &[(&str, &str)], log: Stdio) -> Collector {
        Collector::spawn("ingest", ch, extra_env, log)
    }

    /// `credtrail serve`: the collectors plus scheduled detection.
    pub fn serve(ch: &ClickHouse, extra_env: &[(&str, &str)]) -> Collector {
        Collector::spawn("serve", ch, extra_env, Stdio::inherit())
    }

    fn spawn(command: &str, ch: &ClickHouse, extra_env: &[(&str, &str)], log: Stdio) -> Collector {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.arg(command)
            .envs(ch.env())
            .env_remove("CREDTRAIL_CONFIG")
            .env("CREDTRAIL_HTTP_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start credtrail");
        let url = format!("http://127.0.0.1:{port}");
        // From here the Collector owns the child: dropping it on a failed start kills it.
        let collector = Collector {
            url: url.clone(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = agent().get(format!("{url}/healthz")).call()
                && r.status() == 200
            {
                return collector;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("credtrail {command} did not come up on {url}");
    }

    /// POSTs a body; returns status and parsed JSON.
    pub fn post(
        &self,
        source: &str,
        token: Option<&str>,
        body: &[u8],
        gzip: bool,
    ) -> (u16, serde_json::Value) {
        let mut req = agent().post(format!("{}/v1/ingest/{source}", self.url));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let payload = if gzip {
            req = req.header("Content-Encoding", "gzip");
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(body).unwrap();
            enc.finish().unwrap()
        } else {
            body.to_vec()
        };
        let mut r = req.send(&payload[..]).expect("collector request");
        let status = r.status().as_u16();
        let text = r
            .body_mut()
            .with_config()
            .limit(1 << 26)
            .read_to_string()
            .unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut r = agent()
            .get(format!("{}{path}", self.url))
            .call()
            .expect("collector request");
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    /// Stops with SIGTERM (graceful drain) and returns whether it exited cleanly.
    pub fn stop(mut self) -> bool {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Collector {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: a crash at an arbitrary instant, no draining.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Resident set size of a process in KiB (from /proc), 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:")
}

/// Peak resident set size of a process in KiB (`VmHWM`), 0 when it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:")
}

/// A KiB figure of `/proc/PID/status`.
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The tansu binary: `TANSU_BIN`, or `.local/bin/tansu` fetched by `deploy/kafka/local.sh`.
pub fn tansu_bin() -> PathBuf {
    static FETCH: std::sync::Once = std::sync::Once::new();
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let bin = repo_root().join(".local/bin/tansu");
    FETCH.call_once(|| {
        if !bin.exists() {
            let status = Command::new(repo_root().join("deploy/kafka/local.sh"))
                .arg("install")
                .status()
                .expect("run deploy/kafka/local.sh");
            assert!(status.success(), "fetching tansu failed");
        }
    });
    bin
}

/// A tansu broker (Kafka protocol, in-memory storage) for one test, stopped by PID on drop.
pub struct Broker {
    pub address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Broker {
    pub fn start() -> Broker {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("broker.log")).unwrap();
        let child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{address}"),
                "--advertised-listener-url",
                &format!("tcp://{address}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        let broker = Broker {
            address: address.clone(),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&address).is_ok() {
                return broker;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tansu did not listen on {address}");
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu_bin())
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{}", self.address),
                "--partitions",
                &partitions.to_string(),
                name,
            ])
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "topic create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the broker stops answering but keeps its data.
    pub fn freeze(&self) {
        let _ = Command::new("kill")
            .args(["-STOP", &self.child.id().to_string()])
            .status();
    }

    pub fn thaw(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
    }

    pub fn producer(&self) -> rdkafka::producer::BaseProducer {
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("linger.ms", "20")
            .set("message.max.bytes", "20000000")
            .set("queue.buffering.max.messages", "200000")
            .create()
            .expect("producer")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.thaw();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces every payload to `topic` (round-robin over partitions by key) and waits until the
/// broker has them all.
pub fn produce(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    payloads: impl IntoIterator<Item = Vec<u8>>,
) -> u64 {
    use rdkafka::producer::{BaseRecord, Producer};
    let mut n = 0u64;
    for payload in payloads {
        let key = n.to_string();
        let mut record = BaseRecord::to(topic).key(&key).payload(&payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "produce failed: {e}"
                    );
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        n += 1;
        if n.is_multiple_of(1000) {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("every message delivered to the broker");
    n
}

/// `credtrail ingest` consuming `topics` (`topic=format,...`) from `broker` in `group`.
pub fn kafka_ingest(
    ch: &ClickHouse,
    broker: &Broker,
    group: &str,
    topics: &str,
    extra_env: &[(&str, &str)],
) -> Collector {
    let mut env: Vec<(&str, &str)> = vec![
        ("CREDTRAIL_HTTP_ALLOW_UNAUTHENTICATED", "true"),
        ("CREDTRAIL_KAFKA_BROKERS", &broker.address),
        ("CREDTRAIL_KAFKA_GROUP_ID", group),
        ("CREDTRAIL_KAFKA_TOPICS", topics),
        // Quick group joins on tansu (it holds a join for half the session timeout).
        ("CREDTRAIL_KAFKA_SESSION_TIMEOUT_MS", "3000"),
        ("CREDTRAIL_KAFKA_COMMIT_INTERVAL_MS", "300"),
        ("CREDTRAIL_SINK_FLUSH_INTERVAL_MS", "200"),
    ];
    env.extend_from_slice(extra_env);
    Collector::start(ch, &env)
}

/// A metric in a Prometheus text exposition, summed over its series whose labels include every
/// one of `labels` (e.g. `kind="assign"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `count_sql` until it reaches `want` or `timeout` passes; returns the last count.
pub fn wait_for_count(ch: &ClickHouse, count_sql: &str, want: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n = ch.count(count_sql);
        if n >= want || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What a fault test prints and asserts: produced, stored once, duplicated, lost.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    pub produced: u64,
    /// Distinct source events stored.
    pub stored: u64,
    /// Rows every query sees (`events FINAL`) beyond one per source event.
    pub double_counted: u64,
    /// Physical rows not yet merged away (visible only to a query without FINAL).
    pub unmerged_copies: u64,
    pub lost: u64,
}

impl Delivery {
    pub fn measure(ch: &ClickHouse, produced: u64) -> Delivery {
        let final_rows = ch.count("SELECT count() FROM events FINAL");
        let distinct = ch.count("SELECT uniqExact(source_event_id) FROM events FINAL");
        let physical = ch.count("SELECT count() FROM events");
        Delivery {
            produced,
            stored: distinct,
            double_counted: final_rows - distinct,
            unmerged_copies: physical - distinct,
            lost: produced.saturating_sub(distinct),
        }
    }

    pub fn print(&self, test: &str) {
        println!(
            "{test}: produced {} stored {} double-counted {} lost {} (unmerged physical copies {})",
            self.produced, self.stored, self.double_counted, self.lost, self.unmerged_copies
        );
    }
}

/// Reads `topic` from the beginning until `want` distinct keys were seen or `timeout` passes;
/// returns each distinct key with the names of its message's headers.
pub fn consume_keys(
    broker: &Broker,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> std::collections::BTreeMap<String, Vec<String>> {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", format!("reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "3000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = std::collections::BTreeMap::new();
    let deadline = Instant::now() + timeout;
    while seen.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let headers = m
                .headers()
                .map(|h| h.iter().map(|h| h.key.to_owned()).collect())
                .unwrap_or_default();
            seen.insert(key, headers);
        }
    }
    seen
}

/// A Prometheus server (Debian's `prometheus`) on a free loopback port with its storage in a
/// temp dir, scraping one target every second and evaluating rule files every second; stopped
/// by PID on drop.
pub struct Prometheus {
    pub url: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(target: &str, rule_files: &[PathBuf]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|p| format!("  - {:?}", p.display().to_string()))
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}\n\
             scrape_configs:\n  - job_name: credtrail\n    static_configs:\n      - targets: [{target:?}]\n",
            rules.join("\n")
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let data = dir.path().join("data").display().to_string();
        // A free port can be taken by a concurrent test's server before ours binds it; that one
        // would answer our readiness check, so ours is known by its storage path.
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", file.display()))
                .arg(format!("--storage.tsdb.path={data}"))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start prometheus (Debian package `prometheus`)");
            let url = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                let flags = agent()
                    .get(format!("{url}/api/v1/status/flags"))
                    .call()
                    .ok()
                    .and_then(|mut r| r.body_mut().read_to_string().ok())
                    .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok());
                if let Some(flags) = flags
                    && flags["data"]["storage.tsdb.path"] == data.as_str()
                {
                    return Prometheus {
                        url,
                        child,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("prometheus did not come up (five ports tried)");
    }

    fn api(&self, path: &str, query: Option<&str>) -> serde_json::Value {
        let mut req = agent().get(format!("{}{path}", self.url));
        if let Some(q) = query {
            req = req.query("query", q);
        }
        let mut r = req.call().expect("prometheus API");
        let body: serde_json::Value =
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"].clone()
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        self.api("/api/v1/query", Some(expr))["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Alerts pending or firing.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        self.api("/api/v1/alerts", None)["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a rule's test case expects: (workspace, alias, run) per finding, sorted.
pub fn expected_findings(
    case: &credtrail_query::detect::rule::Case,
) -> Vec<(String, String, String)> {
    let mut want: Vec<(String, String, String)> = case
        .expect
        .iter()
        .map(|e| (e.workspace.clone(), e.alias.clone(), e.run.clone()))
        .collect();
    want.sort();
    want
}

/// Every file below `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A generated scenario's ground truth (`truth.ndjson`).
pub fn facts(dir: &Path) -> Vec<credtrail_scenario::Fact> {
    std::fs::read_to_string(dir.join("truth.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Asserts that every `credtrail_…` series `text` (PromQL, alert rules) names is one credtrail
/// exports: a typo would never fire or show. Histogram suffixes name their family.
pub fn assert_series_exported(text: &str, what: &str) -> usize {
    let sources: String = ["ingest/src", "query/src"]
        .iter()
        .flat_map(|d| walk(&repo_root().join(d)))
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let names: std::collections::BTreeSet<&str> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("credtrail_"))
        .collect();
    for name in &names {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        assert!(
            sources.contains(&format!("\"{family}\"")),
            "{what} uses {name}, which credtrail does not export"
        );
    }
    names.len()
}
