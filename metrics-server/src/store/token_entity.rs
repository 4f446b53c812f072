//! The sea-orm entity of the `tokens` table (see its migration for what each column is for).
#![allow(unreachable_pub, missing_docs)] // sea-orm derives generate public items.

use sea_orm::entity::prelude::*;

/// One API token, by its hash.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "tokens")]
pub struct Model {
    /// What `token revoke` and `DELETE /v1/tokens/{id}` name.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// A label for people.
    pub name: String,
    /// SHA-256 of the token, lowercase hex: the only form of the secret that is kept.
    #[sea_orm(unique)]
    pub hash: String,
    /// The token's first characters, to tell tokens apart.
    pub hint: String,
    /// Comma-separated scopes.
    pub scopes: String,
    /// The name prefixes it is confined to, as a JSON array (empty: every name).
    pub prefixes: String,
    /// When it was created, in microseconds since the Unix epoch.
    pub created_micros: i64,
    /// When it was revoked, if it was.
    pub revoked_micros: Option<i64>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
