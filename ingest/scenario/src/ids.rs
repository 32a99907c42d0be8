//! Identifiers in the shapes the real systems use (HCP `ws-…` ids, UUIDs, AWS access key ids),
//! all drawn from the scenario's seeded generator so a seed always gives the same ids.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The scenario's one source of randomness (ChaCha8: the same stream on every platform and
/// `rand` version).
pub struct Ids {
    pub rng: ChaCha8Rng,
}

impl Ids {
    pub fn new(seed: u64) -> Ids {
        Ids {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn pick(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[self.rng.random_range(0..alphabet.len())] as char)
            .collect()
    }

    /// `prefix-` and 16 letters and digits, like `ws-7Qd2CwLx8HXZPf3q`.
    pub fn hcp(&mut self, prefix: &str) -> String {
        format!("{prefix}-{}", self.pick(ALNUM, 16))
    }

    pub fn digits(&mut self, n: usize) -> String {
        let mut s = String::new();
        s.push(char::from(b'1' + self.rng.random_range(0..9u8)));
        for _ in 1..n {
            s.push(char::from(b'0' + self.rng.random_range(0..10u8)));
        }
        s
    }

    pub fn uuid(&mut self) -> String {
        let b: u128 = self.rng.random();
        let h = format!("{b:032x}");
        format!(
            "{}-{}-4{}-{}{}-{}",
            &h[0..8],
            &h[8..12],
            &h[13..16],
            ["8", "9", "a", "b"][(b & 3) as usize],
            &h[17..20],
            &h[20..32]
        )
    }

    /// An AWS temporary access key id (`ASIA…`).
    pub fn access_key(&mut self) -> String {
        format!("ASIA{}", self.pick(UPPER, 16))
    }

    /// A hex string of `n` characters.
    pub fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.rng.random_range(0..16u32), 16).unwrap_or('0'))
            .collect()
    }

    /// One of HCP Terraform's worker egress addresses.
    pub fn hcp_ip(&mut self) -> String {
        let nets = ["52.86", "44.215", "3.230", "75.2"];
        format!(
            "{}.{}.{}",
            nets[self.rng.random_range(0..nets.len())],
            self.rng.random_range(0..256u16),
            self.rng.random_range(1..255u16)
        )
    }
}
