//! Building a [`Classification`]: one constructor and chained setters, instead of the nine
//! fields written out at every answer.

use crate::{Classification, Disposition, TransportError, TransportErrorKind, names, reasons};

impl Classification {
    /// A classification with only a disposition and a reason; the setters add the rest.
    pub fn new(disposition: Disposition, reason: &str) -> Classification {
        Classification {
            disposition,
            reason: reason.to_string(),
            provider_code: None,
            provider_title: None,
            provider_details: None,
            provider_trace_id: None,
            retry_after_ms: None,
            operator_action: false,
            provider_message_id: None,
        }
    }

    /// `retry` after `ms` (or when the host's policy says, if `None`).
    pub fn retry(reason: &str, ms: Option<u64>) -> Classification {
        Classification::new(Disposition::Retry, reason).retry_after(ms)
    }

    /// `failed`, with a person needed to fix it (credentials, configuration, a bad request).
    pub fn needs_operator(disposition: Disposition, reason: &str) -> Classification {
        Classification::new(disposition, reason).with_operator_action()
    }

    pub fn retry_after(mut self, ms: Option<u64>) -> Classification {
        self.retry_after_ms = ms;
        self
    }

    pub fn with_operator_action(mut self) -> Classification {
        self.operator_action = true;
        self
    }

    pub fn with_provider_code(mut self, code: impl Into<String>) -> Classification {
        self.provider_code = Some(code.into());
        self
    }

    pub fn with_provider_title(mut self, title: impl Into<String>) -> Classification {
        self.provider_title = Some(title.into());
        self
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Classification {
        self.provider_details = Some(details.into());
        self
    }

    pub fn with_message_id(mut self, id: impl Into<String>) -> Classification {
        self.provider_message_id = Some(id.into());
        self
    }
}

/// A request that failed below HTTP: refused by the host's allowlist (`failed`, a person must
/// change a grant), possibly delivered (`unknown`: it may have left, so never resent blindly),
/// or certainly not sent (`retry` after `backoff_ms`). The details name the kind and the
/// host's message.
pub fn transport_failure(err: &TransportError, backoff_ms: Option<u64>) -> Classification {
    let c = if err.kind == TransportErrorKind::Denied {
        Classification::needs_operator(Disposition::Failed, reasons::HOST_POLICY_DENIED)
    } else if err.request_sent {
        Classification::new(Disposition::Unknown, reasons::OUTCOME_UNKNOWN)
    } else {
        Classification::retry(reasons::TRANSPORT_ERROR, backoff_ms)
    };
    c.with_details(format!(
        "{}: {}",
        names::transport_kind(err.kind),
        err.message
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: TransportErrorKind, request_sent: bool) -> TransportError {
        TransportError {
            kind,
            request_sent,
            message: "boom".into(),
        }
    }

    #[test]
    fn a_request_that_may_have_left_is_unknown_never_retried() {
        for kind in [TransportErrorKind::Timeout, TransportErrorKind::Reset] {
            let c = transport_failure(&error(kind, true), Some(1_000));
            assert_eq!(c.disposition, Disposition::Unknown);
            assert_eq!(c.retry_after_ms, None);
        }
    }

    #[test]
    fn a_request_that_never_left_is_retried_after_the_backoff() {
        let c = transport_failure(&error(TransportErrorKind::Connect, false), Some(2_000));
        assert_eq!(c.disposition, Disposition::Retry);
        assert_eq!(c.retry_after_ms, Some(2_000));
        assert_eq!(c.provider_details.as_deref(), Some("connect: boom"));
    }

    #[test]
    fn a_request_the_host_refused_needs_an_operator() {
        let c = transport_failure(&error(TransportErrorKind::Denied, false), Some(2_000));
        assert_eq!(c.disposition, Disposition::Failed);
        assert!(c.operator_action);
        assert_eq!(c.reason, reasons::HOST_POLICY_DENIED);
    }
}
