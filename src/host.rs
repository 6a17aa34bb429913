//! What the channel needs from its host, as a trait (the SDK's), so the domain can be tested
//! natively with a real in-process implementation and run in wasm against the host's imports.

pub use channel_sdk::Host;
