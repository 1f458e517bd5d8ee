//! Integration tests: the real router, XML-RPC API and engine, in-process, against SQLite and
//! (when it answers, or when COPR_TEST_REQUIRE_POSTGRES=1) PostgreSQL, each test on a fresh
//! database or schema. One binary, so the server links once.

mod auth;
mod crash;
mod credentials;
mod engine;
mod leader;
mod listener;
mod live;
mod observe;
mod oidc;
mod openapi;
mod process;
mod requests;
mod routing;
mod support;
mod web;
mod xmlrpc;
