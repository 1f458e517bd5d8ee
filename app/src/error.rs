//! The error vocabulary shared by the web UI, the server functions and the JSON API.
//!
//! Every variant reads as an instruction to the person who sees it. Internals (SQL, I/O) are
//! logged on the server and never travel in one of these.

use serde::{Deserialize, Serialize};

/// One problem with one input field of a form or API body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The form field or JSON key, as the user typed it (`max_starting`, `tags[2]`).
    pub field: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum AppError {
    #[error("sign in to continue")]
    Unauthenticated,
    #[error("you are signed in, but not allowed to do this")]
    Forbidden,
    #[error("{0} was not found")]
    NotFound(String),
    #[error("{}", describe_fields(.0))]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    Conflict(String),
    #[error("the request was refused: {0}")]
    BadRequest(String),
    #[error("the server could not finish this; the details are in its log")]
    Internal,
    #[error("the server could not be reached: {0}")]
    Transport(String),
}

fn describe_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl AppError {
    /// A validation error on a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    /// The HTTP status this error is answered with.
    pub fn status_code(&self) -> u16 {
        match self {
            AppError::Unauthenticated => 401,
            AppError::Forbidden => 403,
            AppError::NotFound(_) => 404,
            AppError::Invalid(_) => 422,
            AppError::Conflict(_) => 409,
            AppError::BadRequest(_) => 400,
            AppError::Internal => 500,
            AppError::Transport(_) => 502,
        }
    }

    /// The message for one form field, if this error names it.
    pub fn field_message(&self, field: &str) -> Option<String> {
        match self {
            AppError::Invalid(errors) => errors
                .iter()
                .find(|e| e.field == field)
                .map(|e| e.message.clone()),
            _ => None,
        }
    }
}

impl leptos::server_fn::error::FromServerFnError for AppError {
    type Encoder = leptos::server_fn::codec::JsonEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}
