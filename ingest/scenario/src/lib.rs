//! `credtrail generate`: seeded, reproducible scenarios of HCP Terraform dynamic-credentials
//! traffic in the real source formats, with misconfigurations and attacks planted on purpose and
//! the findings they must produce written beside them.
//!
//! A scenario is an estate ([`world`]: organizations, workspaces, their configurations and the
//! inventory that declares them) and its days of traffic: every run's plan and apply phases
//! issue a token per configuration and exchange it ([`benign`]: hourly re-exchanges in long
//! applies, ordinary transient failures, module tests, harmless variable edits), and [`plant`]
//! adds one case per chosen rule in the judged days. The first day is history only, so rules
//! with baselines have one. [`records`] writes each event as its source writes it.
//!
//! Reproducible: the same [`Spec`] gives byte-identical files.

pub mod benign;
mod ids;
pub mod plant;
pub mod records;
pub mod world;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use ids::Ids;
use plant::Plant;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use world::World;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seed: u64,
    /// Start of the first (history) day.
    pub start: DateTime<Utc>,
    /// Days of traffic, the first one history only (at least 2).
    pub days: u32,
    pub orgs: usize,
    /// Workspaces per organization.
    pub workspaces: usize,
    /// Runs per workspace per day.
    pub runs_per_day: usize,
    /// Cases to plant in the judged days.
    pub plants: Vec<Plant>,
}

/// One planted case: the finding it must produce and the events it consists of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Case {
    pub rule: String,
    pub provider: String,
    pub workspace: String,
    pub alias: String,
    /// The run the case is about, where it has one.
    pub run: String,
    pub description: String,
    /// Source event ids of the planted events.
    pub evidence: Vec<String>,
}

/// `expected.json`: the window to judge and what must be found in it.
#[derive(Debug, Clone, Serialize)]
pub struct Expected {
    pub seed: u64,
    /// The whole scenario.
    pub start: String,
    pub end: String,
    /// The judged days (`credtrail detect --since … --until …`).
    pub judged_since: String,
    pub judged_until: String,
    /// Events (rows credtrail stores) that are ordinary traffic, and planted ones.
    pub benign_events: usize,
    pub planted_events: usize,
    pub cases: Vec<Case>,
}

/// File names, in the order they are written.
pub const FILES: [&str; 6] = [
    "issuance.ndjson",
    "cloudtrail.ndjson",
    "gcp.ndjson",
    "entra.json",
    "vault.log",
    "audit_trail.json",
];

/// Trust policy files written beside the data.
pub const TRUST_FILES: [&str; 2] = ["trust_aws.json", "trust_gcp.json"];

/// A generated scenario in memory.
pub struct Scenario {
    /// File name → content.
    pub files: BTreeMap<&'static str, String>,
    /// Trust policy documents (`credtrail inventory trust`), by file name.
    pub trust: Vec<(&'static str, String)>,
    pub inventory: String,
    pub expected: Expected,
    /// `truth.ndjson`: one [`Fact`] per ordinary issuance and exchange.
    pub truth: String,
}

impl Scenario {
    /// Writes every file, `inventory.toml` and `expected.json` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (name, text) in &self.files {
            std::fs::write(dir.join(name), text)?;
        }
        for (name, text) in &self.trust {
            std::fs::write(dir.join(name), text)?;
        }
        std::fs::write(dir.join("inventory.toml"), &self.inventory)?;
        std::fs::write(dir.join("truth.ndjson"), &self.truth)?;
        let expected =
            serde_json::to_string_pretty(&self.expected).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("expected.json"), expected + "\n")
    }

    /// The data files' paths under `dir`, for `credtrail replay`.
    pub fn data_files(dir: &Path) -> Vec<std::path::PathBuf> {
        FILES.iter().map(|f| dir.join(f)).collect()
    }

    /// The trust policy files' paths under `dir`, for `credtrail inventory trust`.
    pub fn trust_files(dir: &Path) -> Vec<std::path::PathBuf> {
        TRUST_FILES.iter().map(|f| dir.join(f)).collect()
    }
}

/// One ordinary issuance or exchange event as the generator meant it: `truth.ndjson`, the
/// ground truth the forensic query tests compare credtrail's answers with. Fields are what the
/// source log names (an exchange's `run` is empty where the log does not carry it: GCP, Entra,
/// failed Vault logins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Fact {
    /// The stored event's source event id.
    pub id: String,
    /// `issuance` or `exchange`.
    pub kind: String,
    pub provider: String,
    pub org: String,
    pub workspace: String,
    pub run: String,
    pub phase: String,
    pub alias: String,
    /// The principal asked for.
    pub principal: String,
    /// `issued`, `success` or `failure`.
    pub outcome: String,
    /// The token issued, or the token this exchange presented.
    pub jti: String,
    /// The AWS access key id a successful AssumeRoleWithWebIdentity returned.
    pub session: String,
    /// RFC 3339 UTC, seconds.
    pub time: String,
}

/// Where generated records go while a scenario is built, and which of them are planted.
pub struct Out {
    lines: BTreeMap<&'static str, String>,
    facts: Vec<Fact>,
    audit: Vec<Value>,
    benign: usize,
    planted: usize,
    /// While set, emitted events belong to this case's evidence.
    planting: Option<Vec<String>>,
}

impl Out {
    fn new() -> Out {
        Out {
            lines: FILES.iter().map(|f| (*f, String::new())).collect(),
            facts: Vec::new(),
            audit: Vec::new(),
            benign: 0,
            planted: 0,
            planting: None,
        }
    }

    /// One record that credtrail stores as one event with this source event id.
    pub fn event(&mut self, file: &'static str, id: String, record: &Value) {
        self.line(file, record);
        self.count(id);
    }

    /// One record credtrail reads but does not store (a Vault request line).
    pub fn line(&mut self, file: &'static str, record: &Value) {
        if file == "audit_trail.json" {
            self.audit.push(record.clone());
            return;
        }
        let buf = self.lines.get_mut(file).expect("a known file");
        buf.push_str(&record.to_string());
        buf.push('\n');
    }

    fn count(&mut self, id: String) {
        match &mut self.planting {
            Some(ids) => {
                ids.push(id);
                self.planted += 1;
            }
            None => self.benign += 1,
        }
    }

    /// Records what an ordinary event is (planted events are described by their case).
    pub fn fact(&mut self, fact: Fact) {
        if self.planting.is_none() {
            self.facts.push(fact);
        }
    }

    /// Starts collecting a case's evidence.
    pub fn begin_case(&mut self) {
        self.planting = Some(Vec::new());
    }

    /// The evidence collected since [`Out::begin_case`].
    pub fn end_case(&mut self) -> Vec<String> {
        self.planting.take().unwrap_or_default()
    }
}

/// The state generation threads through: randomness, the estate, the output.
pub struct Gen {
    pub ids: Ids,
    pub world: World,
    pub out: Out,
    pub start: DateTime<Utc>,
    pub judged_since: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Generates a scenario.
pub fn generate(spec: &Spec) -> Result<Scenario, String> {
    if spec.days < 2 {
        return Err("--days must be at least 2 (the first day is history)".into());
    }
    if spec.orgs == 0 || spec.workspaces == 0 || spec.runs_per_day == 0 {
        return Err("--orgs, --workspaces and --runs-per-day must be at least 1".into());
    }
    let mut ids = Ids::new(spec.seed);
    let world = World::new(&mut ids, spec.orgs, spec.workspaces);
    let start = spec.start;
    let mut g = Gen {
        ids,
        world,
        out: Out::new(),
        start,
        judged_since: start + Duration::days(1),
        end: start + Duration::days(i64::from(spec.days)),
    };
    let planned = plant::prepare(&mut g, &spec.plants)?;
    benign::traffic(&mut g, spec.runs_per_day, &planned);
    let mut cases = plant::plant(&mut g, &planned);
    let (trust, broad_sha) = world::trust_policies(&g.world, planned.broad_trust());
    if let (Some(case), Some(sha)) = (
        cases
            .iter_mut()
            .find(|c| c.rule == Plant::TrustPolicyTooBroad.rule()),
        broad_sha,
    ) {
        case.evidence = vec![sha];
    }
    let mut files: BTreeMap<&'static str, String> = std::mem::take(&mut g.out.lines);
    let page = serde_json::json!({
        "data": g.out.audit,
        "pagination": {"current_page": 1, "prev_page": null, "next_page": null, "total_pages": 1,
                       "total_count": g.out.audit.len()},
    });
    files.insert("audit_trail.json", page.to_string() + "\n");
    // Entra sign-ins as `az monitor log-analytics query` prints them: one JSON array of rows,
    // pretty-printed, megabytes for a large estate (read record by record).
    let entra = files.entry("entra.json").or_default();
    let rows: Vec<&str> = entra.lines().collect();
    *entra = format!("[\n  {}\n]\n", rows.join(",\n  "));
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    Ok(Scenario {
        files,
        trust,
        inventory: g.world.inventory_toml(),
        truth: g
            .out
            .facts
            .iter()
            .map(|f| serde_json::to_string(f).map(|l| l + "\n"))
            .collect::<Result<String, _>>()
            .map_err(|e| e.to_string())?,
        expected: Expected {
            seed: spec.seed,
            start: at(g.start),
            end: at(g.end),
            judged_since: at(g.judged_since),
            judged_until: at(g.end),
            benign_events: g.out.benign,
            planted_events: g.out.planted,
            cases,
        },
    })
}
