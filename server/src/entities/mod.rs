//! sea-orm entities: one file per table, in the shape `sea-orm-cli generate entity` writes.
//! Domain methods live in the modules named for their area, not here.

pub mod api_tokens;
pub mod audit_events;
pub mod credential_secrets;
pub mod credentials;
pub mod memberships;
pub mod named_counters;
pub mod pool_history;
pub mod pool_requests;
pub mod pools;
pub mod price_list;
pub mod request_events;
pub mod resources;
pub mod routing_rules;
pub mod routing_state;
pub mod teams;
pub mod tickets;
pub mod usage;
pub mod users;
