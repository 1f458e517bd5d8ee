//! copr-pools: self-service builder pools for Fedora Copr.
//!
//! The binary's modules are a library so integration tests and benchmarks drive the real
//! router, engine and XML-RPC API in-process.

pub mod accounts;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod charts;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod db;
pub mod engine;
pub mod entities;
pub mod live;
pub mod metrics;
pub mod pools;
pub mod prices;
pub mod requests;
pub mod resources;
pub mod routing;
pub mod secrets;
pub mod serve;
pub mod spawners;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod tokens;
pub mod usage;
pub mod waiting;
pub mod web;
pub mod xmlrpc;
