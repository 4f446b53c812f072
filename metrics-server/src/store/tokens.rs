//! [`TokenStore`]: the API tokens, kept as SHA-256 hashes in the `tokens` table (sea-orm entity).
//!
//! A token is `mt_` followed by 64 hex digits (32 bytes from the operating system's random
//! source). The store never sees it after [`TokenStore::create`] returns it: a request's token is
//! hashed and looked up by its hash, so comparing it takes the same time whatever it is.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};

use super::{
    token_entity::{ActiveModel, Column, Entity, Model},
    StoreError,
};
use crate::auth::{self, Grant, Scope};

/// What a new token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    /// A label for people (`ci`, `grafana`, ...).
    pub name: String,
    /// What it may do; `admin` implies every other scope.
    pub scopes: Vec<Scope>,
    /// The metric-name prefixes it is confined to; empty means every name.
    pub prefixes: Vec<String>,
}

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id, for revoking.
    pub id: i64,
    /// Its label.
    pub name: String,
    /// Its first characters (`mt_1a2b3c`), to tell tokens apart.
    pub hint: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The name prefixes it is confined to; empty means every name.
    pub prefixes: Vec<String>,
    /// When it was created, in microseconds since the Unix epoch.
    pub created_micros: i64,
    /// When it was revoked, if it was.
    pub revoked_micros: Option<i64>,
}

/// The tokens table.
#[derive(Clone)]
pub struct TokenStore {
    db: DatabaseConnection,
}

impl TokenStore {
    /// A store over an open, migrated connection (see [`super::connect`]).
    pub fn new(db: DatabaseConnection) -> Self {
        TokenStore { db }
    }

    /// Creates a token; returns it (the only time it is ever seen) and what was stored.
    pub async fn create(&self, new: NewToken) -> Result<(String, TokenInfo), StoreError> {
        let secret = auth::generate_token();
        let row = ActiveModel {
            name: Set(new.name),
            hash: Set(auth::hash_token(&secret)),
            hint: Set(secret.chars().take(auth::HINT_CHARS).collect()),
            scopes: Set(Scope::join(&new.scopes)),
            prefixes: Set(serde_json::to_string(&new.prefixes).unwrap_or_else(|_| "[]".into())),
            created_micros: Set(chrono::Utc::now().timestamp_micros()),
            revoked_micros: Set(None),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok((secret, info(row)))
    }

    /// Every token, revoked ones included, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = Entity::find()
            .order_by_asc(Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(info).collect())
    }

    /// Revokes token `id`; `false` when there is no such token or it was already revoked.
    pub async fn revoke(&self, id: i64) -> Result<bool, StoreError> {
        let result = Entity::update_many()
            .col_expr(
                Column::RevokedMicros,
                chrono::Utc::now().timestamp_micros().into(),
            )
            .filter(Column::Id.eq(id))
            .filter(Column::RevokedMicros.is_null())
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// What the token with this hash may do, if it exists and is not revoked.
    pub async fn grant(&self, hash: &str) -> Result<Option<Grant>, StoreError> {
        let row = Entity::find()
            .filter(Column::Hash.eq(hash))
            .filter(Column::RevokedMicros.is_null())
            .one(&self.db)
            .await?;
        Ok(row.map(|row| {
            let info = info(row);
            Grant::new(info.scopes, info.prefixes)
        }))
    }

    /// How many tokens are not revoked.
    pub async fn active(&self) -> Result<u64, StoreError> {
        Ok(Entity::find()
            .filter(Column::RevokedMicros.is_null())
            .count(&self.db)
            .await?)
    }
}

fn info(row: Model) -> TokenInfo {
    TokenInfo {
        id: row.id,
        name: row.name,
        hint: row.hint,
        scopes: Scope::split(&row.scopes),
        prefixes: serde_json::from_str(&row.prefixes).unwrap_or_default(),
        created_micros: row.created_micros,
        revoked_micros: row.revoked_micros,
    }
}
