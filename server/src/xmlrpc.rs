//! resalloc's XML-RPC protocol on its own listener, wire-compatible with resalloc's Python
//! client, its CLI and Copr's backend (reference §2): `takeTicket`, `collectTicket`,
//! `waitTicket`, `closeTicket` and `system.listMethods`, on the paths `/` and `/RPC2`.
//!
//! Routine conditions never produce a fault, because Python's client retries faults forever:
//! an unknown ticket collects as all-`nil`, closing one twice or closing an unknown one is
//! harmless. Malformed calls get a fault that says what was wrong; oversized bodies get 413.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use dxr::{Fault, FaultResponse, MethodCall, MethodResponse, Value};

use crate::engine::Engine;
use crate::engine::model::TState;
use crate::engine::tickets;

/// The methods offered, in the order `system.listMethods` reports them.
const METHODS: &[(&str, &str)] = &[
    (
        "takeTicket",
        "takeTicket(tags[, sandbox]) -> ticket id. Asks for a machine carrying all of the tags.",
    ),
    (
        "collectTicket",
        "collectTicket(id) -> {ready, output, closed, failed}. Never blocks.",
    ),
    (
        "waitTicket",
        "waitTicket(id) -> output. Blocks until the ticket has a machine.",
    ),
    (
        "closeTicket",
        "closeTicket(id) -> nil. Gives the machine back.",
    ),
    (
        "system.listMethods",
        "system.listMethods() -> the method names.",
    ),
    (
        "system.methodHelp",
        "system.methodHelp(name) -> a line about the method.",
    ),
    (
        "system.methodSignature",
        "system.methodSignature(name) -> not supported, as in Python's server.",
    ),
];

/// How often a `waitTicket` caller re-reads its ticket when no wake-up came (resalloc: 10 s).
const WAIT_RECHECK: Duration = Duration::from_secs(10);

/// The XML-RPC router, to be served on its own address.
pub fn router(engine: Engine, max_body_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/", post(handle).get(not_post))
        .route("/RPC2", post(handle).get(not_post))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(engine)
}

async fn not_post() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "This is resalloc's XML-RPC endpoint: POST a methodCall here.\n",
    )
        .into_response()
}

/// A reason to answer with a fault.
struct Refusal(String);

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(message.into()))
}

async fn handle(State(engine): State<Engine>, body: Bytes) -> Response {
    let result = match std::str::from_utf8(&body) {
        Ok(text) => match MethodCall::from_xml(text) {
            Ok(call) => dispatch(&engine, &call.name, call.params).await,
            Err(e) => refuse(format!(
                "malformed XML-RPC request: {}",
                short(&e.to_string())
            )),
        },
        Err(_) => refuse("the request body is not UTF-8 text"),
    };
    let xml = match result {
        Ok(value) => MethodResponse { value }.to_xml(),
        Err(Refusal(message)) => FaultResponse {
            fault: Fault::new(1, message),
        }
        .to_xml(),
    };
    match xml {
        Ok(xml) => (
            [(header::CONTENT_TYPE, "text/xml")],
            format!("<?xml version=\"1.0\"?>\n{xml}"),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an XML-RPC response");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialize the response\n",
            )
                .into_response()
        }
    }
}

fn short(text: &str) -> String {
    let mut s: String = text.chars().take(200).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

async fn dispatch(engine: &Engine, method: &str, params: Vec<Value>) -> Result<Value, Refusal> {
    let db = engine.db();
    let internal = |e: sea_orm::DbErr| {
        tracing::error!(error = %e, method, "database error in an XML-RPC call");
        Refusal(format!(
            "{method}: the server could not reach its database; try again"
        ))
    };
    match method {
        "takeTicket" => {
            let (tags, sandbox) = take_params(params)?;
            let id = tickets::take(db, tags, sandbox).await.map_err(internal)?;
            engine.wake();
            Ok(Value::Integer(ticket_int(id)?))
        }
        "collectTicket" => {
            let id = ticket_id(method, &params)?;
            let view = tickets::collect(db, id).await.map_err(internal)?;
            Ok(collected(view))
        }
        "waitTicket" => {
            let id = ticket_id(method, &params)?;
            match tickets::wait(db, engine.waiters(), id, WAIT_RECHECK)
                .await
                .map_err(internal)?
            {
                Some(output) => Ok(Value::Base64(output)),
                None => refuse(format!("no such ticket {id}")),
            }
        }
        "closeTicket" => {
            let id = ticket_id(method, &params)?;
            if tickets::close(db, id).await.map_err(internal)? {
                engine.wake();
            } else {
                tracing::warn!(
                    ticket = id,
                    "closeTicket for an unknown ticket; nothing to do"
                );
            }
            Ok(Value::Nil)
        }
        "system.listMethods" => Ok(Value::Array(
            METHODS
                .iter()
                .map(|(m, _)| Value::String(m.to_string()))
                .collect(),
        )),
        "system.methodHelp" => {
            let name = match params.first() {
                Some(Value::String(s)) => s.as_str(),
                _ => return refuse("system.methodHelp takes the method name as a string"),
            };
            Ok(Value::String(
                METHODS
                    .iter()
                    .find(|(m, _)| *m == name)
                    .map_or("", |(_, h)| h)
                    .to_string(),
            ))
        }
        "system.methodSignature" => Ok(Value::String("signatures not supported".into())),
        other => refuse(format!("method \"{}\" is not supported", short(other))),
    }
}

/// `takeTicket(tags[, sandbox])`: tags an array of strings; sandbox a string or nil.
fn take_params(params: Vec<Value>) -> Result<(Vec<String>, Option<String>), Refusal> {
    let mut params = params.into_iter();
    let tags = match params.next() {
        // Like resalloc, take what a Python client can send as a tag: a string (even an
        // empty one, which no pool offers) or a number. Only structures are nonsense.
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                Value::Integer(i) => Ok(i.to_string()),
                Value::Double(d) => Ok(d.to_string()),
                Value::Boolean(b) => Ok(if b { "True" } else { "False" }.to_string()),
                _ => refuse("takeTicket: each tag must be a string"),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Nil) | None => {
            return refuse("takeTicket: tags are required, as an array of strings");
        }
        Some(_) => return refuse("takeTicket: tags must be an array of strings"),
    };
    let sandbox = match params.next() {
        None | Some(Value::Nil) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return refuse("takeTicket: the sandbox must be a string"),
    };
    if params.next().is_some() {
        return refuse("takeTicket takes at most two parameters: tags and sandbox");
    }
    Ok((tags, sandbox))
}

/// A ticket id, sent as `<int>` or as a numeric `<string>` (the resalloc CLI sends strings).
fn ticket_id(method: &str, params: &[Value]) -> Result<i64, Refusal> {
    match params {
        [Value::Integer(i)] => Ok(i64::from(*i)),
        [Value::String(s)] => s.trim().parse::<i64>().or_else(|_| {
            refuse(format!(
                "{method}: {:?} is not a ticket id; send a number",
                short(s)
            ))
        }),
        [] => refuse(format!("{method} takes the ticket id")),
        [_] => refuse(format!(
            "{method}: the ticket id must be an int or a numeric string"
        )),
        _ => refuse(format!("{method} takes one parameter, the ticket id")),
    }
}

fn ticket_int(id: i64) -> Result<i32, Refusal> {
    i32::try_from(id).or_else(|_| refuse("ticket ids have outgrown XML-RPC's 32-bit int"))
}

/// resalloc's `collectTicket` struct; all `nil` for an unknown ticket.
fn collected(view: Option<tickets::TicketView>) -> Value {
    let mut m = BTreeMap::new();
    match view {
        None => {
            for k in ["ready", "output", "closed", "failed"] {
                m.insert(k.to_string(), Value::Nil);
            }
        }
        Some(t) => {
            let ready = t.ready();
            m.insert("ready".into(), Value::Boolean(ready));
            m.insert(
                "output".into(),
                match (ready, t.output) {
                    (true, Some(data)) => Value::Base64(data),
                    _ => Value::Nil,
                },
            );
            m.insert("closed".into(), Value::Boolean(t.state == TState::Closed));
            m.insert("failed".into(), Value::Boolean(t.state == TState::Failed));
        }
    }
    Value::Struct(m)
}
