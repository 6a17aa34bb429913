//! The embedded defaults the demo, the mock and the tests share.

/// Phone number id of the embedded defaults (Meta's sample id).
pub const DEMO_PHONE_NUMBER_ID: &str = "106540352242922";
/// The token the embedded mock accepts.
pub const DEMO_ACCESS_TOKEN: &str = "mock-access-token";
/// The API key the embedded mock's SMS API accepts.
pub const DEMO_SMS_API_KEY: &str = "mock-sms-key";
/// The demo's messages, one per scenario.
pub const DEMO_MESSAGES: &str = include_str!("../defaults/demo-messages.json");
