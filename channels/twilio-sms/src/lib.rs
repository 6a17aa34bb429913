//! SMS through Twilio's Programmable Messaging API, the fallback channel that reaches real
//! providers (issue 23). Built up in steps: the provider's rules first, as plain modules tested
//! natively against Twilio's published examples; the contract's exports and the component
//! build next (`crates/channel-sdk`, as the WhatsApp channel).
//!
//! - [`codes`]: Twilio's error codes, each with what the flow does about it;
//! - [`segments`]: what a body costs: GSM-7 or UCS-2, and the segments the carrier bills;
//! - [`signature`]: the text Twilio signs in `X-Twilio-Signature` (the host holds the key).

pub mod codes;
pub mod segments;
pub mod signature;
