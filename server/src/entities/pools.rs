use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "pools")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub state: String,
    pub owner_team_id: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    pub max: i32,
    pub max_starting: i32,
    pub max_prealloc: i32,
    pub start_delay: i32,
    #[sea_orm(column_type = "Text")]
    pub cmd_new: String,
    #[sea_orm(column_type = "Text")]
    pub cmd_delete: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub cmd_livecheck: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub cmd_release: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub cmd_list: Option<String>,
    pub livecheck_period: i32,
    pub livecheck_attempts: i32,
    pub reuse_opportunity_time: i32,
    pub reuse_max_count: i32,
    pub reuse_max_time: i32,
    pub name_pattern: String,
    #[sea_orm(column_type = "Text")]
    pub tags: String,
    #[sea_orm(column_type = "Text")]
    pub tags_on_demand: String,
    #[sea_orm(column_type = "Text")]
    pub named_counters: String,
    pub timeout_new: i32,
    pub timeout_delete: i32,
    pub timeout_livecheck: i32,
    pub timeout_release: i32,
    pub timeout_list: i32,
    pub start_on_waiting: bool,
    pub list_period: i32,
    pub unknown_min_age: i32,
    pub last_start_ms: Option<i64>,
    pub last_attempt_to_start_ms: Option<i64>,
    pub last_successful_start_ms: Option<i64>,
    #[sea_orm(column_type = "Double", nullable)]
    pub start_success_rate: Option<f64>,
    #[sea_orm(column_type = "Double", nullable)]
    pub start_time_avg: Option<f64>,
    pub last_list_ms: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub credential_id: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub state_reason: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub tags_required: String,
    #[sea_orm(column_type = "Double", nullable)]
    pub price_per_hour: Option<f64>,
    #[sea_orm(column_type = "Double", nullable)]
    pub monthly_cap: Option<f64>,
    /// The request whose approval made the pool.
    pub request_id: Option<i32>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
