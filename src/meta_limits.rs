//! Meta's numbers, in one place: every limit the channel enforces, grouped by where Meta
//! states it. Modules use these by name; nothing restates a number.

/// The customer-service window a customer's message (or call) opens.
pub const SERVICE_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;
/// Longest id part of a business-scoped user id ("up to 128 alphanumeric characters").
pub const BSUID_MAX_ID: usize = 128;
/// Longest `biz_opaque_callback_data` (our correlation id).
pub const CORRELATION_ID_MAX: usize = 512;

/// Free-form messages.
pub mod messages {
    /// A text message body.
    pub const TEXT_BODY: usize = 4096;
    /// A media caption.
    pub const CAPTION: usize = 1024;
    /// Contacts in one contacts message.
    pub const CONTACTS: usize = 257;
}

/// Interactive messages (the body limit differs: 4,096 for lists, 1,024 otherwise).
pub mod interactive {
    pub const HEADER_TEXT: usize = 60;
    pub const FOOTER_TEXT: usize = 60;
    pub const BODY_TEXT: usize = 1024;
    pub const LIST_BODY_TEXT: usize = 4096;
    pub const REPLY_BUTTONS: usize = 3;
    pub const BUTTON_TITLE: usize = 20;
    pub const BUTTON_ID: usize = 256;
    pub const LIST_BUTTON: usize = 20;
    pub const SECTIONS: usize = 10;
    pub const ROWS: usize = 10;
    pub const SECTION_TITLE: usize = 24;
    pub const ROW_ID: usize = 200;
    pub const ROW_TITLE: usize = 24;
    pub const ROW_DESCRIPTION: usize = 72;
    pub const CTA_DISPLAY_TEXT: usize = 20;
    /// Meta's pages disagree (20 without emoji; "advised 30 or less"); the larger is enforced.
    pub const FLOW_CTA: usize = 30;
    /// Cards in an interactive media carousel.
    pub const CAROUSEL_CARDS: (usize, usize) = (2, 10);
    /// Quick-reply buttons on one carousel card (one `cta_url` otherwise).
    pub const CAROUSEL_CARD_REPLY_BUTTONS: usize = 2;
    /// A carousel card's body text.
    pub const CAROUSEL_CARD_BODY: usize = 160;
}

/// Template creation (Meta's components page and the marketing template pages).
pub mod templates {
    pub const NAME: usize = 512;
    pub const HEADER_TEXT: usize = 60;
    pub const BODY_TEXT: usize = 1024;
    pub const FOOTER_TEXT: usize = 60;
    pub const BUTTONS: usize = 10;
    pub const QUICK_REPLY_BUTTONS: usize = 10;
    pub const URL_BUTTONS: usize = 2;
    pub const PHONE_BUTTONS: usize = 1;
    pub const COPY_CODE_BUTTONS: usize = 1;
    pub const BUTTON_LABEL: usize = 25;
    pub const BUTTON_URL: usize = 2000;
    pub const BUTTON_PHONE: usize = 20;
    pub const COPY_CODE_EXAMPLE: usize = 15;
    pub const CODE_EXPIRATION_MINUTES: (i64, i64) = (1, 90);
    /// Cards in a carousel template; the count is fixed when it is approved.
    pub const CAROUSEL_CARDS: (usize, usize) = (2, 10);
    /// A carousel card's body text.
    pub const CAROUSEL_CARD_BODY: usize = 160;
    /// Buttons on one carousel card.
    pub const CAROUSEL_CARD_BUTTONS: usize = 2;
    /// A limited-time offer's text.
    pub const OFFER_TEXT: usize = 16;
    /// The body of a limited-time-offer template.
    pub const OFFER_BODY: usize = 600;
}

/// Sending a template.
pub mod template_sends {
    /// A hydrated body when the template has only a body.
    pub const BODY_ONLY_HYDRATED: usize = 32_768;
    /// An authentication code.
    pub const OTP: usize = 15;
    /// A coupon code parameter.
    pub const COUPON_CODE: usize = 15;
}
