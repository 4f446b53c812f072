//! `metrics-server token create|list|revoke`: managing tokens in the database, from a shell.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat};

use super::Scope;
use crate::{
    config::TokenCommand,
    store::{self, NewToken, TokenInfo, TokenStore},
    Config,
};

/// Runs one token command against `--database-url`. `create` prints the new token alone on
/// stdout (so that `TOKEN=$(metrics-server token create ...)` works) and what it may do on
/// stderr; the token is shown this once and never again.
pub async fn run(config: &Config, command: &TokenCommand) -> anyhow::Result<()> {
    let db = store::connect(&config.database_url, 1)
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                crate::redact(&config.database_url)
            )
        })?;
    let tokens = TokenStore::new(db);
    let mut out = std::io::stdout().lock();
    match command {
        TokenCommand::Create {
            scopes,
            prefixes,
            name,
        } => {
            let new = validate(name.clone(), scopes.clone(), prefixes.clone())
                .map_err(anyhow::Error::msg)?;
            let (secret, info) = tokens.create(new).await?;
            eprintln!(
                "created token {} {:?} with scopes {}{}; it is shown once, keep it now:",
                info.id,
                info.name,
                Scope::join(&info.scopes),
                describe_prefixes(&info.prefixes),
            );
            writeln!(out, "{secret}")?;
        }
        TokenCommand::List => {
            writeln!(
                out,
                "{:>4}  {:<16}  {:<22}  {:<16}  {:<10}  {:<20}  REVOKED",
                "ID", "NAME", "SCOPES", "PREFIXES", "HINT", "CREATED"
            )?;
            for info in tokens.list().await? {
                writeln!(out, "{}", row(&info))?;
            }
        }
        TokenCommand::Revoke { id } => {
            if !tokens.revoke(*id).await? {
                anyhow::bail!("no token {id} to revoke (unknown or already revoked)");
            }
            eprintln!("revoked token {id}");
        }
    }
    Ok(())
}

/// Checks a new token's settings; the message says what to change.
pub(crate) fn validate(
    name: String,
    scopes: Vec<Scope>,
    prefixes: Vec<String>,
) -> Result<NewToken, String> {
    if scopes.is_empty() {
        return Err("a token needs at least one scope: read, write, delete or admin".into());
    }
    if scopes.contains(&Scope::Admin) && !prefixes.is_empty() {
        return Err(
            "an admin token cannot be confined to name prefixes (it can create any token)".into(),
        );
    }
    if prefixes.iter().any(|p| p.is_empty()) {
        return Err("a name prefix cannot be empty".into());
    }
    Ok(NewToken {
        name,
        scopes,
        prefixes,
    })
}

fn describe_prefixes(prefixes: &[String]) -> String {
    if prefixes.is_empty() {
        String::new()
    } else {
        format!(
            ", confined to names starting with {}",
            prefixes.join(" or ")
        )
    }
}

fn row(info: &TokenInfo) -> String {
    let time = |micros: i64| {
        DateTime::from_timestamp_micros(micros)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    };
    format!(
        "{:>4}  {:<16}  {:<22}  {:<16}  {:<10}  {:<20}  {}",
        info.id,
        info.name,
        Scope::join(&info.scopes),
        if info.prefixes.is_empty() {
            "*".to_owned()
        } else {
            info.prefixes.join(",")
        },
        info.hint,
        time(info.created_micros),
        info.revoked_micros.map(time).unwrap_or_else(|| "-".into()),
    )
}
