//! What an SMS body costs: its encoding and how many segments the carrier bills.
//!
//! A body whose every character is in the GSM 03.38 alphabet goes as GSM-7: 160 septets in one
//! segment, 153 per segment once it needs several (the concatenation header takes 7). The
//! characters of the extension table (`^ { } \ [ ~ ] | €` and the form feed) take two septets,
//! an escape and the character, and a segment never ends between the two. Any other character
//! sends the whole body as UCS-2: 70 UTF-16 code units in one segment, 67 per segment after
//! that, and a segment never ends inside a surrogate pair. (3GPP TS 23.038 and 23.040; Twilio
//! counts the same way: its `num_segments`.)

/// How a body is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}

/// A body's encoding and segment count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub encoding: Encoding,
    pub segments: u32,
    /// Characters (Unicode scalar values), the unit of Twilio's 1,600 limit.
    pub characters: usize,
}

/// The GSM 03.38 default alphabet, in code order (one septet each).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: an escape septet and one more.
const EXTENDED: &str = "\u{c}^{}\\[~]|€";

/// Septets one character takes in GSM-7, `None` if it has none.
fn septets(c: char) -> Option<u32> {
    if c != '\u{1b}' && BASIC.contains(c) {
        Some(1)
    } else if EXTENDED.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding and segments of `body`.
pub fn cost(body: &str) -> Cost {
    let characters = body.chars().count();
    let gsm: Option<Vec<u32>> = body.chars().map(septets).collect();
    match gsm {
        Some(units) => Cost {
            encoding: Encoding::Gsm7,
            segments: pack(&units, 160, 153),
            characters,
        },
        None => {
            let units: Vec<u32> = body.chars().map(|c| c.len_utf16() as u32).collect();
            Cost {
                encoding: Encoding::Ucs2,
                segments: pack(&units, 70, 67),
                characters,
            }
        }
    }
}

/// Segments needed for characters of `units` each (never split): one if the whole fits in
/// `single`, else as many of `multi` as it takes.
fn pack(units: &[u32], single: u32, multi: u32) -> u32 {
    let total: u32 = units.iter().sum();
    if total <= single {
        return 1;
    }
    let (mut segments, mut used) = (1, 0);
    for &u in units {
        if used + u > multi {
            segments += 1;
            used = 0;
        }
        used += u;
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_short_gsm_body_is_one_segment() {
        assert_eq!(cost("").segments, 1);
        assert_eq!(cost("Your order A-7 shipped.").encoding, Encoding::Gsm7);
        assert_eq!(cost("Your order A-7 shipped.").segments, 1);
    }

    #[test]
    fn gsm_bodies_fit_160_in_one_then_153_per_segment() {
        assert_eq!(cost(&"a".repeat(160)).segments, 1);
        assert_eq!(cost(&"a".repeat(161)).segments, 2);
        assert_eq!(cost(&"a".repeat(306)).segments, 2);
        assert_eq!(cost(&"a".repeat(307)).segments, 3);
        assert_eq!(cost(&"a".repeat(1_530)).segments, 10);
    }

    #[test]
    fn extension_characters_take_two_septets_and_are_never_split() {
        assert_eq!(cost(&"€".repeat(80)).segments, 1);
        assert_eq!(cost(&"€".repeat(81)).segments, 2);
        // 152 septets, then an escape pair that does not fit in the 153rd: next segment.
        let body = format!("{}{}{}", "a".repeat(152), "[", "a".repeat(10));
        assert_eq!(cost(&body).encoding, Encoding::Gsm7);
        assert_eq!(cost(&body).segments, 2);
        let body = format!("{}{}", "a".repeat(152), "[".repeat(77));
        assert_eq!(cost(&body).segments, 3);
    }

    #[test]
    fn one_character_outside_the_alphabet_makes_the_body_ucs2() {
        let c = cost("Olá, João! Seu pedido foi enviado ✓");
        assert_eq!(c.encoding, Encoding::Ucs2);
        assert_eq!(c.segments, 1);
        assert_eq!(
            cost(&"ç".repeat(70)).segments,
            1,
            "ç is not in GSM-7 (only Ç is)"
        );
        assert_eq!(cost(&"ç".repeat(71)).segments, 2);
        assert_eq!(cost(&"ç".repeat(134)).segments, 2);
        assert_eq!(cost(&"ç".repeat(135)).segments, 3);
    }

    #[test]
    fn emoji_count_two_code_units_and_a_pair_is_never_split() {
        assert_eq!(cost(&"😀".repeat(35)).segments, 1);
        assert_eq!(cost(&"😀".repeat(36)).segments, 2);
        // 66 units, then a pair that does not fit in the 67th: next segment.
        let body = format!("{}{}", "ç".repeat(66), "😀".repeat(34));
        assert_eq!(cost(&body).segments, 3);
        assert_eq!(cost("😀").characters, 1);
    }

    #[test]
    fn the_escape_character_itself_is_not_sendable_as_gsm_text() {
        assert_eq!(cost("\u{1b}").encoding, Encoding::Ucs2);
    }
}
