use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "usage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub pool: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: String,
    /// Machine time in milliseconds, counted exactly.
    pub machine_ms: i64,
    #[sea_orm(column_type = "Double")]
    pub cost: f64,
    pub starts: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
