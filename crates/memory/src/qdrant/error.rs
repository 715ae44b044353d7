//! Qdrant's errors in our terms: an [`ErrorKind`] from the gRPC status, and a message that names
//! the collection.
//!
//! Server-side codes follow Qdrant's own mapping of its storage errors (bad input → invalid
//! argument, not found, forbidden → permission denied, rate limit → resource exhausted, shard
//! unavailable → unavailable, service errors → internal). The client adds its own: a refused or
//! dropped connection comes back as `Internal` ("Failed to connect to …") or `Unavailable`, and a
//! request past the client's deadline as `Cancelled` ("Timeout expired").
//!
//! The API key travels in a request header and never appears in a status; messages hold the
//! server's text and the URL only.

use std::time::Duration;

use corral_core::{ErrorKind, ProviderError, VectorStoreError};
use qdrant_client::QdrantError;
use tonic::Code;

use super::PROVIDER_TYPE;

/// The kind of a gRPC status code from Qdrant or its client.
pub fn kind_of(code: Code, message: &str) -> ErrorKind {
    match code {
        Code::Unavailable | Code::Internal | Code::Aborted | Code::Unknown => ErrorKind::Transient,
        Code::Cancelled if message.contains("Timeout expired") => ErrorKind::Timeout,
        Code::Cancelled => ErrorKind::Transient,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        Code::ResourceExhausted => ErrorKind::RateLimited,
        Code::Unauthenticated | Code::PermissionDenied => ErrorKind::Auth,
        Code::InvalidArgument | Code::NotFound | Code::AlreadyExists | Code::OutOfRange => {
            ErrorKind::InvalidRequest
        }
        Code::Ok | Code::FailedPrecondition | Code::Unimplemented | Code::DataLoss => {
            ErrorKind::Permanent
        }
    }
}

/// A Qdrant client error as a store error; `doing` says what failed, naming the collection
/// (`"upserting into Qdrant collection `corral_docs`"`).
pub fn store_error(doing: &str, error: QdrantError) -> VectorStoreError {
    provider_error(doing, error).into()
}

/// Whether a client error says the thing already exists (a collection made meanwhile).
pub fn is_already_exists(error: &QdrantError) -> bool {
    match error {
        QdrantError::ResponseError { status } => {
            status.code() == Code::AlreadyExists
                || (status.code() == Code::InvalidArgument
                    && status.message().contains("already exists"))
        }
        _ => false,
    }
}

fn provider_error(doing: &str, error: QdrantError) -> ProviderError {
    let (kind, detail, retry_after) = match &error {
        QdrantError::ResponseError { status } => (
            kind_of(status.code(), status.message()),
            Some(format!("{:?}: {}", status.code(), status.message())),
            None,
        ),
        QdrantError::ResourceExhaustedError {
            status,
            retry_after_seconds,
        } => (
            ErrorKind::RateLimited,
            Some(format!("{:?}: {}", status.code(), status.message())),
            Some(Duration::from_secs(*retry_after_seconds)),
        ),
        QdrantError::ConversionError(_) | QdrantError::InvalidUri(_) => {
            (ErrorKind::InvalidRequest, None, None)
        }
        QdrantError::Io(_) => (ErrorKind::Transient, None, None),
        _ => (ErrorKind::Permanent, None, None),
    };
    let mut message = match &detail {
        Some(detail) => format!("{doing} failed: {detail}"),
        None => format!("{doing} failed: {error}"),
    };
    // What a gRPC client says when `url` is Qdrant's REST port (6333) or not Qdrant at all.
    if let QdrantError::ResponseError { status } = &error
        && status.code() == Code::Unknown
        && status.message().contains("transport error")
    {
        message.push_str(" (is `url` Qdrant's gRPC port, usually 6334?)");
    }
    let mut e = ProviderError::new(kind, message).with_provider(PROVIDER_TYPE);
    e.body = detail;
    if let Some(wait) = retry_after {
        e = e.with_retry_after(wait);
    }
    e
}

/// A store error of our own making (not from the client).
pub fn invalid(message: impl Into<String>) -> VectorStoreError {
    VectorStoreError::InvalidRequest(message.into())
}

/// A store error for what Qdrant handed back but we cannot read (a payload we did not write).
pub fn corrupt(message: impl Into<String>) -> VectorStoreError {
    ProviderError::new(ErrorKind::Permanent, message)
        .with_provider(PROVIDER_TYPE)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_core::error::CapabilityError;
    use tonic::Status;

    #[test]
    fn statuses_classify_by_what_retrying_can_do() {
        let kind = |status: Status| store_error("x", status.into()).kind();
        assert_eq!(
            kind(Status::internal(
                "Failed to connect to http://127.0.0.1:1/: ConnectError"
            )),
            ErrorKind::Transient
        );
        assert_eq!(
            kind(Status::unavailable("shard down")),
            ErrorKind::Transient
        );
        assert_eq!(
            kind(Status::cancelled("Timeout expired")),
            ErrorKind::Timeout
        );
        assert_eq!(kind(Status::deadline_exceeded("slow")), ErrorKind::Timeout);
        assert_eq!(
            kind(Status::unauthenticated("Invalid api-key")),
            ErrorKind::Auth
        );
        assert_eq!(
            kind(Status::permission_denied("read only")),
            ErrorKind::Auth
        );
        assert_eq!(
            kind(Status::invalid_argument("Wrong input: bad vector")),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            kind(Status::not_found("no collection")),
            ErrorKind::InvalidRequest
        );
        assert_eq!(
            kind(Status::failed_precondition("locked")),
            ErrorKind::Permanent
        );
        assert_eq!(
            kind(Status::resource_exhausted("slow down")),
            ErrorKind::RateLimited
        );
    }

    #[test]
    fn messages_say_what_failed_and_keep_the_servers_text() {
        let e = store_error(
            "searching Qdrant collection `corral_docs`",
            Status::invalid_argument("Wrong input: Vector dimension error").into(),
        );
        let VectorStoreError::Provider(p) = &e else {
            panic!("not a provider error: {e:?}");
        };
        assert_eq!(p.provider.as_deref(), Some(PROVIDER_TYPE));
        assert!(p.message.contains("`corral_docs`"), "{}", p.message);
        assert!(
            p.message.contains("Vector dimension error"),
            "{}",
            p.message
        );
        assert_eq!(
            p.body.as_deref(),
            Some("InvalidArgument: Wrong input: Vector dimension error")
        );
    }

    #[test]
    fn a_server_asking_to_wait_is_rate_limiting() {
        let mut status = Status::resource_exhausted("too many requests");
        status
            .metadata_mut()
            .insert("retry-after", tonic::metadata::MetadataValue::from(7u32));
        let e = store_error("x", status.into());
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    }
}
