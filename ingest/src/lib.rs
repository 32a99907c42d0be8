//! credtrail's write path.
//!
//! An event travels `sources` -> `formats` (framing, then one file per format) -> `normalize`
//! -> `sink`. `model` is the row it becomes, `schema` the tables it lands in, `config` the one
//! TOML file that sets it all up, `metrics` what the pipeline counts about itself.
//!
//! See ARCHITECTURE.md for the invariants (at-least-once, dedup, no raw tokens, bounded labels).

pub mod alias;
pub mod config;
pub mod emit;
pub mod fingerprint;
pub mod formats;
pub mod metrics;
pub mod model;
pub mod normalize;
pub mod sample;
pub mod schema;
pub mod sink;
pub mod sources;
pub mod store;
