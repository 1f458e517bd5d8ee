use sea_orm::entity::prelude::*;

/// One interval of a pool's history (pool `''`: every pool together). See the migration.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "pool_history")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub pool: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub step_secs: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub at_ms: i64,
    #[sea_orm(column_type = "Double")]
    pub ready: f64,
    #[sea_orm(column_type = "Double")]
    pub taken: f64,
    #[sea_orm(column_type = "Double")]
    pub starting: f64,
    #[sea_orm(column_type = "Double")]
    pub ending: f64,
    #[sea_orm(column_type = "Double")]
    pub waiting: f64,
    pub samples: i32,
    pub starts: i32,
    pub start_failures: i32,
    pub assigned: i32,
    pub to_ready_p50_ms: Option<i64>,
    pub to_ready_p95_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
