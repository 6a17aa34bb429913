//! The contract's names for its enums' cases (`wit/channel.wit`), as channels write them in
//! details and logs.

use crate::{Disposition, TransportErrorKind};

/// A disposition's name in the contract.
pub fn disposition(d: Disposition) -> &'static str {
    match d {
        Disposition::Accepted => "accepted",
        Disposition::Sent => "sent",
        Disposition::Delivered => "delivered",
        Disposition::Read => "read",
        Disposition::Retry => "retry",
        Disposition::Fallback => "fallback",
        Disposition::Failed => "failed",
        Disposition::Unknown => "unknown",
    }
}

/// A transport error kind's name in the contract.
pub fn transport_kind(kind: TransportErrorKind) -> &'static str {
    match kind {
        TransportErrorKind::Dns => "dns",
        TransportErrorKind::Connect => "connect",
        TransportErrorKind::Tls => "tls",
        TransportErrorKind::Timeout => "timeout",
        TransportErrorKind::Reset => "reset",
        TransportErrorKind::Denied => "denied",
        TransportErrorKind::TooLarge => "too-large",
        TransportErrorKind::Other => "other",
    }
}
