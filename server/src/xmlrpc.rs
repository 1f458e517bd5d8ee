//! resalloc's XML-RPC protocol on its own listener, wire-compatible with resalloc's Python
//! client, its CLI and Copr's backend (reference §2): `takeTicket`, `collectTicket`,
//! `waitTicket`, `closeTicket` and `system.listMethods`, on the paths `/` and `/RPC2`.
//!
//! Routine conditions never produce a fault, because Python's client retries faults forever:
//! an unknown ticket collects as all-`nil`, closing one twice or closing an unknown one is
//! harmless. Malformed calls get a fault that says what was wrong; oversized bodies get 413.
//!
//! Like resalloc's, this API has no authentication, so it must never be reachable from a web
//! page: any page a developer has open could otherwise post `closeTicket` for every ticket
//! id to the loopback listener. Browsers cannot send `Content-Type: text/xml` across origins
//! without a preflight this server never answers, and they mark their requests with `Origin`
//! and `Sec-Fetch-Site`; such requests get 403. Hostile XML (deep nesting, huge texts, huge
//! arrays) is refused by a streaming pre-check before anything is built from it.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use dxr::{Fault, FaultResponse, MethodCall, MethodResponse, Value};
use quick_xml::events::Event;

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

/// Limits on a request's XML, far above anything resalloc's clients send (Copr's backend
/// sends a handful of tags and a sandbox name, nested 7 elements deep).
pub const MAX_DEPTH: usize = 32;
pub const MAX_VALUES: usize = 10_000;
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
pub const MAX_METHOD_NAME_BYTES: usize = 128;

/// The XML-RPC router, to be served on its own address.
pub fn router(engine: Engine, max_body_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/", post(handle).get(not_post))
        .route("/RPC2", post(handle).get(not_post))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn(refuse_browsers))
        .with_state(engine)
}

/// Why a request looks like it came from a web page, or lacks XML-RPC's content type.
pub fn browser_reason(headers: &HeaderMap) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        return Some(format!(
            "requests from web pages are refused (Origin: {})",
            origin.to_str().unwrap_or("?")
        ));
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"none"
    {
        return Some(format!(
            "requests from web pages are refused (Sec-Fetch-Site: {})",
            site.to_str().unwrap_or("?")
        ));
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match media_type.as_deref() {
        Some("text/xml") => None,
        Some(other) => Some(format!(
            "XML-RPC requests are sent as Content-Type: text/xml, not {other}"
        )),
        None => Some("XML-RPC requests are sent as Content-Type: text/xml".to_string()),
    }
}

/// Middleware: 403 with a one-line reason for anything [`browser_reason`] objects to.
async fn refuse_browsers(req: Request<Body>, next: Next) -> Response {
    if req.method() == axum::http::Method::POST
        && let Some(reason) = browser_reason(req.headers())
    {
        tracing::warn!(%reason, "XML-RPC request refused");
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("Refused: {reason}.\n"),
        )
            .into_response();
    }
    next.run(req).await
}

/// Reads the request's XML as a stream of events, without building anything, and refuses it
/// when it nests deeper than [`MAX_DEPTH`], holds more than [`MAX_VALUES`] values, a text
/// longer than [`MAX_TEXT_BYTES`] or a method name longer than [`MAX_METHOD_NAME_BYTES`].
/// Stops at the first excess, so a hostile request costs at most one pass over its bytes.
pub fn check_shape(xml: &str) -> Result<(), String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut depth = 0usize;
    let mut values = 0usize;
    let mut in_method_name = false;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "the request nests deeper than {MAX_DEPTH} elements"
                    ));
                }
                let name = e.local_name();
                if name.as_ref() == "value" {
                    values += 1;
                }
                in_method_name = name.as_ref() == "methodName";
            }
            Ok(Event::Empty(e)) => {
                if e.local_name().as_ref() == "value" {
                    values += 1;
                }
            }
            Ok(Event::End(_)) => {
                depth = depth.saturating_sub(1);
                in_method_name = false;
            }
            Ok(Event::Text(t)) => {
                let len = t.len();
                if in_method_name && len > MAX_METHOD_NAME_BYTES {
                    return Err(format!(
                        "the method name is longer than {MAX_METHOD_NAME_BYTES} bytes"
                    ));
                }
                if len > MAX_TEXT_BYTES {
                    return Err(format!(
                        "a value is longer than {} KiB",
                        MAX_TEXT_BYTES / 1024
                    ));
                }
            }
            Ok(Event::CData(t)) => {
                if t.len() > MAX_TEXT_BYTES {
                    return Err(format!(
                        "a value is longer than {} KiB",
                        MAX_TEXT_BYTES / 1024
                    ));
                }
            }
            Ok(Event::DocType(_)) => {
                return Err("document type declarations are not allowed".to_string());
            }
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            // The real parse says what is wrong with the XML itself.
            Err(_) => return Ok(()),
        }
        if values > MAX_VALUES {
            return Err(format!("the request holds more than {MAX_VALUES} values"));
        }
    }
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
        Ok(text) => match check_shape(text) {
            Err(why) => refuse(format!("request refused: {why}")),
            Ok(()) => match MethodCall::from_xml(text) {
                Ok(call) => dispatch(&engine, &call.name, call.params).await,
                Err(e) => refuse(format!(
                    "malformed XML-RPC request: {}",
                    short(&e.to_string())
                )),
            },
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
