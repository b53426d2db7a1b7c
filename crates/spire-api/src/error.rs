//! Errors of the SPIRE client: call-level (`SpireError`), per item of a batch
//! (`ItemError`), and a batch write cut short (`BatchError`).

use std::fmt;
use std::time::Duration;

use tonic::Code;

/// A failed call to the SPIRE Server API. Every variant names the RPC (`method`, e.g.
/// `"ListEntries"`) and maps to a gRPC code (`code()`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpireError {
    /// The socket address is not one of the accepted forms.
    #[error("invalid SPIRE server socket address {address:?}: {reason}")]
    InvalidAddress { address: String, reason: &'static str },
    /// The RPC failed as a whole (server unreachable, refused, internal error, ...).
    #[error("{method} failed: code = {code:?} desc = {message}")]
    Rpc { method: &'static str, code: Code, message: String },
    /// The RPC did not complete within the per-call deadline.
    #[error("{method} failed: deadline of {timeout:?} exceeded")]
    DeadlineExceeded { method: &'static str, timeout: Duration },
    /// The server answered, but the answer cannot be used (unconvertible entry, wrong
    /// number of batch results, ...). Never handed back as a partial result.
    #[error("{method}: invalid response from SPIRE server: {reason}")]
    InvalidResponse { method: &'static str, reason: String },
    /// The request could not be built from the given input (nothing was sent).
    #[error("{method}: invalid request: {reason}")]
    InvalidRequest { method: &'static str, reason: String },
    /// A single-item operation that the server answered with a non-OK item status
    /// (the unsupported-fields probe).
    #[error("{method}: item rejected: code = {code:?} desc = {message}")]
    Rejected { method: &'static str, code: Code, message: String },
}

impl SpireError {
    /// The RPC (or `"connect"` for an address error).
    pub fn method(&self) -> &'static str {
        match self {
            Self::InvalidAddress { .. } => "connect",
            Self::Rpc { method, .. }
            | Self::DeadlineExceeded { method, .. }
            | Self::InvalidResponse { method, .. }
            | Self::InvalidRequest { method, .. }
            | Self::Rejected { method, .. } => method,
        }
    }

    /// The gRPC code this error stands for.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidAddress { .. } | Self::InvalidRequest { .. } => Code::InvalidArgument,
            Self::Rpc { code, .. } | Self::Rejected { code, .. } => *code,
            Self::DeadlineExceeded { .. } => Code::DeadlineExceeded,
            Self::InvalidResponse { .. } => Code::Internal,
        }
    }

    /// A low-cardinality label for metrics: the snake_case gRPC code of an RPC failure
    /// (`unavailable`, `deadline_exceeded`, `permission_denied`, ...), or
    /// `invalid_response` / `invalid_request` / `invalid_address` / `rejected`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::InvalidAddress { .. } => "invalid_address",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::InvalidResponse { .. } => "invalid_response",
            Self::Rejected { .. } => "rejected",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::Rpc { code, .. } => code_label(*code),
        }
    }

    /// Whether retrying later may help (server down, busy or slow).
    pub fn is_transient(&self) -> bool {
        matches!(self.code(), Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted)
    }

    pub(crate) fn from_status(method: &'static str, status: tonic::Status, timeout: Duration) -> Self {
        // tonic's own deadline enforcement (grpc-timeout) surfaces as CANCELLED "Timeout expired".
        if status.code() == Code::Cancelled && status.message() == "Timeout expired" {
            return Self::DeadlineExceeded { method, timeout };
        }
        let mut message = status.message().to_owned();
        if message.is_empty() {
            // Transport failures carry their cause in the source chain.
            let mut source = std::error::Error::source(&status);
            while let Some(err) = source {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&err.to_string());
                source = err.source();
            }
        }
        Self::Rpc { method, code: status.code(), message }
    }
}

/// snake_case name of a gRPC code, for metric labels.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Why one item of a batch write did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemErrorKind {
    /// SPIRE answered this item with a non-OK status (e.g. `AlreadyExists`, `NotFound`,
    /// `InvalidArgument`).
    Rejected,
    /// Not sent: the item could not be put on the wire (e.g. a federation relationship
    /// with an invalid bundle endpoint URL). `code` is `InvalidArgument`.
    Invalid,
    /// Sent, but the RPC carrying it failed as a whole; the outcome is unknown.
    /// `code`/`message` are the RPC's.
    RpcFailed,
    /// Not sent: an earlier batch's RPC failed and the remaining batches were skipped.
    /// `code` is `Aborted`.
    NotAttempted,
}

/// The failure of one item of a batch write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("code = {code:?} desc = {message}")]
pub struct ItemError {
    pub code: Code,
    pub message: String,
    pub kind: ItemErrorKind,
}

impl ItemError {
    pub(crate) fn rejected(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), kind: ItemErrorKind::Rejected }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self { code: Code::InvalidArgument, message: message.into(), kind: ItemErrorKind::Invalid }
    }

    pub(crate) fn rpc_failed(err: &SpireError) -> Self {
        Self { code: err.code(), message: err.to_string(), kind: ItemErrorKind::RpcFailed }
    }

    pub(crate) fn not_attempted() -> Self {
        Self {
            code: Code::Aborted,
            message: "not attempted: an earlier batch failed".into(),
            kind: ItemErrorKind::NotAttempted,
        }
    }

    /// Whether the item was sent to SPIRE (its outcome on the server may be known or not).
    pub fn was_sent(&self) -> bool {
        matches!(self.kind, ItemErrorKind::Rejected | ItemErrorKind::RpcFailed)
    }
}

/// The outcome of one item of a batch write, in request order.
pub type BatchResult<T> = Result<T, ItemError>;

/// Metric label of an item outcome, as upstream counts writes: `ok`, `already_exists`,
/// `not_found`, or `error` for anything else.
pub fn item_code_label<T>(result: &BatchResult<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.code == Code::AlreadyExists => "already_exists",
        Err(e) if e.code == Code::NotFound => "not_found",
        Err(_) => "error",
    }
}

/// A batch write stopped by an RPC-level failure. `results` has one outcome per input
/// item, in input order: the items of batches that completed carry their per-item
/// outcome, those of the failed batch are `ItemErrorKind::RpcFailed`, and the rest
/// `ItemErrorKind::NotAttempted`.
#[derive(Clone, PartialEq, Eq)]
pub struct BatchError<T> {
    pub error: SpireError,
    pub results: Vec<BatchResult<T>>,
}

impl<T> BatchError<T> {
    /// Splits a batch outcome into per-item results (always one per input item) and the
    /// RPC error that cut it short, if any.
    pub fn split(outcome: Result<Vec<BatchResult<T>>, BatchError<T>>) -> (Vec<BatchResult<T>>, Option<SpireError>) {
        match outcome {
            Ok(results) => (results, None),
            Err(BatchError { error, results }) => (results, Some(error)),
        }
    }
}

impl<T> fmt::Debug for BatchError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ok = self.results.iter().filter(|r| r.is_ok()).count();
        f.debug_struct("BatchError")
            .field("error", &self.error)
            .field("items", &self.results.len())
            .field("ok", &ok)
            .finish()
    }
}

impl<T> fmt::Display for BatchError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sent = self.results.iter().filter(|r| !matches!(r, Err(e) if !e.was_sent())).count();
        write!(f, "{} ({sent} of {} items sent)", self.error, self.results.len())
    }
}

impl<T> std::error::Error for BatchError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<BatchError<T>> for SpireError {
    fn from(err: BatchError<T>) -> Self {
        err.error
    }
}
