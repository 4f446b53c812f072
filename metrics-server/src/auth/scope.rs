//! What a token may do: its [`Scope`]s, and the [`Grant`] of a request's caller, which may confine
//! it to metric names with some prefixes.

use metrics_types::ErrorCode;
use poem::http::StatusCode;

use crate::api::ApiError;

/// What a token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum, poem_openapi::Enum,
)]
#[oai(rename_all = "lowercase")]
pub enum Scope {
    /// Query metrics, list names, subscribe to the live streams.
    Read,
    /// Store metrics.
    Write,
    /// Delete metrics (for the delete routes to come).
    Delete,
    /// Manage tokens; implies every other scope.
    Admin,
}

impl Scope {
    /// The scope's name, as written in tokens and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Delete => "delete",
            Scope::Admin => "admin",
        }
    }

    /// Scopes as stored: comma-separated.
    pub(crate) fn join(scopes: &[Scope]) -> String {
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Scopes as stored, read back (unknown names are skipped).
    pub(crate) fn split(text: &str) -> Vec<Scope> {
        text.split(',')
            .filter_map(|s| match s.trim() {
                "read" => Some(Scope::Read),
                "write" => Some(Scope::Write),
                "delete" => Some(Scope::Delete),
                "admin" => Some(Scope::Admin),
                _ => None,
            })
            .collect()
    }
}

/// What the caller of a request may do: the scopes and name prefixes of its token. Handlers find
/// it in the request's extensions when auth is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub(super) scopes: Vec<Scope>,
    prefixes: Vec<String>,
}

impl Grant {
    /// A grant of these scopes, confined to names starting with one of `prefixes` (none: any).
    pub fn new(scopes: Vec<Scope>, prefixes: Vec<String>) -> Self {
        Grant { scopes, prefixes }
    }

    /// Whether the token has `scope` (or `admin`).
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }

    /// Whether the token is confined to some name prefixes (an admin token never is).
    pub fn is_confined(&self) -> bool {
        !self.prefixes.is_empty() && !self.scopes.contains(&Scope::Admin)
    }

    /// Whether the token may touch metrics named `name`.
    pub fn allows_name(&self, name: &str) -> bool {
        !self.is_confined() || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// The 403 for a metric name outside the token's prefixes.
    pub(crate) fn name_forbidden(&self, name: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "this token is confined to metric names starting with {}; {name:?} is not one",
                self.prefix_list()
            ),
        )
    }

    pub(super) fn prefix_list(&self) -> String {
        self.prefixes
            .iter()
            .map(|p| format!("{p:?}"))
            .collect::<Vec<_>>()
            .join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_every_scope_and_no_confinement() {
        let admin = Grant::new(vec![Scope::Admin], vec!["cpu.".into()]);
        assert!(admin.allows(Scope::Write) && admin.allows_name("mem"));
        let writer = Grant::new(vec![Scope::Write], vec!["cpu.".into()]);
        assert!(!writer.allows(Scope::Read));
        assert!(writer.allows_name("cpu.load") && !writer.allows_name("mem"));
    }
}
