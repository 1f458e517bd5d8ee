use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "resources")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i32,
    pub pool: String,
    pub name: Option<String>,
    pub state: String,
    #[sea_orm(column_type = "VarBinary(StringLen::None)", nullable)]
    pub data: Option<Vec<u8>>,
    #[sea_orm(column_type = "Text")]
    pub tags: String,
    pub id_in_pool: i32,
    #[sea_orm(unique)]
    pub ticket_id: Option<i32>,
    pub sandbox: Option<String>,
    pub sandboxed_since_ms: Option<i64>,
    pub released_at_ms: Option<i64>,
    pub releases_counter: i32,
    pub check_failed_count: i32,
    pub check_last_ms: Option<i64>,
    pub up_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub delete_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Until when the machine's time is counted in `usage` (epoch ms).
    pub accounted_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
