use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "credential_secrets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub credential_id: i32,
    #[sea_orm(primary_key, auto_increment = false)]
    pub field: String,
    pub key_id: String,
    #[sea_orm(column_type = "Blob")]
    pub sealed: Vec<u8>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
