//! Token secrets: generating and hashing tokens, and reading the bootstrap admin token
//! (`METRICS_ADMIN_TOKEN` or `--admin-token-file`).

use std::path::PathBuf;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::Config;

/// A secret from the configuration: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Shortest bootstrap token accepted, in characters.
pub(crate) const MIN_SECRET_CHARS: usize = 20;

/// Parses `METRICS_ADMIN_TOKEN`: at least [`MIN_SECRET_CHARS`] characters.
pub(crate) fn parse_secret(s: &str) -> Result<Secret, String> {
    let s = s.trim();
    if s.chars().count() < MIN_SECRET_CHARS {
        return Err(format!(
            "an admin token needs at least {MIN_SECRET_CHARS} characters; generate one with \
             `openssl rand -hex 32` or use `metrics-server token create --scope admin`"
        ));
    }
    Ok(Secret(s.to_owned()))
}

/// The beginning of every generated token, so that secret scanners can spot one.
pub const TOKEN_PREFIX: &str = "mt_";

/// Characters of a token kept as its hint.
pub(crate) const HINT_CHARS: usize = 9;

/// A new token: [`TOKEN_PREFIX`] and 32 random bytes in hex.
pub(crate) fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    // The operating system's generator failing is not something to serve through.
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// SHA-256 of a token, lowercase hex: what the store keeps and looks up.
pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The bootstrap admin token: `METRICS_ADMIN_TOKEN`, or the contents of `--admin-token-file`.
pub(super) fn bootstrap_token(config: &Config) -> anyhow::Result<Option<Secret>> {
    if let Some(secret) = &config.admin_token {
        return Ok(Some(secret.clone()));
    }
    let Some(path) = &config.admin_token_file else {
        return Ok(None);
    };
    read_token_file(path).map(Some)
}

fn read_token_file(path: &PathBuf) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --admin-token-file {}", path.display()))?;
    parse_secret(&text)
        .map_err(|err| anyhow::anyhow!("--admin-token-file {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let (a, b) = (generate_token(), generate_token());
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
        assert!(!format!("{:?}", parse_secret(&a)).contains(&a));
    }
}
