//! The sea-orm entity of the `metrics` table (see the migration for what each column is for).
#![allow(unreachable_pub, missing_docs)] // sea-orm derives generate public items.

use sea_orm::entity::prelude::*;

/// One stored metric.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "metrics")]
pub struct Model {
    /// Storage order and stream cursor; never reused.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The metric's name.
    pub name: String,
    /// The instant, in microseconds since the Unix epoch.
    pub ts: i64,
    /// The value when it is a number.
    pub value: Option<f64>,
    /// The object as posted.
    pub doc: String,
}

/// No relations: one table.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
