use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "named_counters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource_id: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub counter_name: String,
    pub value: i32,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
