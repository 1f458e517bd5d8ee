//! One module per page.

pub mod admin;
pub mod auth;
pub mod credentials;
pub mod not_found;
pub mod pools;
pub mod requests;
pub mod routing;
pub mod status;
pub mod teams;
