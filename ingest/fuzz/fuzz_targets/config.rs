//! Configuration text: every error has a key path, and a valid result re-validates.
#![no_main]

use credtrail_ingest::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Config::from_toml(text, |_| None) {
        Ok(config) => {
            let again = toml::to_string(&config).expect("a config serializes");
            assert!(Config::from_toml(&again, |_| None).is_ok(), "{again}");
        }
        Err(errors) => assert!(errors.iter().all(|e| !e.path.is_empty())),
    }
});
