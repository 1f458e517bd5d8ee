//! Pieces shared by several pages.

pub mod charts;
pub mod layout;
pub mod live;
pub mod notice;
