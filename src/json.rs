//! The JSON the channel reads and writes: parse, query, build, print.
//!
//! A small purpose-built value in place of `serde_json` (whose generic parser, float
//! conversions and hash-indexed maps were some 40 KB of the component). It keeps what the
//! channel relies on: objects keep their keys in document order (a repeated key keeps its first
//! place and its last value), numbers print exactly as they were written, strings are UTF-8
//! with JSON's escapes, nesting stops at [`MAX_DEPTH`] with an error rather than a stack
//! overflow, and a syntax error names its line and column.

use std::fmt::{self, Write as _};

/// Nesting depth past which a document is refused (`serde_json`'s limit too).
pub const MAX_DEPTH: usize = 128;

/// A JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// A JSON number: an integer that fits 64 bits, or the text of any other number (kept as
/// written, so it prints back unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Number(N);

#[derive(Debug, Clone, PartialEq, Eq)]
enum N {
    PosInt(u64),
    NegInt(i64),
    Other(Box<str>),
}

impl Number {
    pub fn as_u64(&self) -> Option<u64> {
        match self.0 {
            N::PosInt(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.0 {
            N::PosInt(n) => i64::try_from(n).ok(),
            N::NegInt(n) => Some(n),
            N::Other(_) => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match &self.0 {
            N::PosInt(n) => Some(*n as f64),
            N::NegInt(n) => Some(*n as f64),
            N::Other(text) => text.parse().ok(),
        }
    }

    pub fn is_u64(&self) -> bool {
        matches!(self.0, N::PosInt(_))
    }

    /// The number `f` prints as (`None` for infinities and NaN, which JSON cannot hold).
    pub fn from_f64(f: f64) -> Option<Number> {
        f.is_finite().then(|| match f {
            f if f.fract() == 0.0 && f.abs() < 1e15 => Number::from_integer_f64(f),
            f => Number(N::Other(f.to_string().into())),
        })
    }

    fn from_integer_f64(f: f64) -> Number {
        // `1.0` stays a float in the text, like serde_json prints it.
        Number(N::Other(format!("{f:.1}").into()))
    }

    /// Whether `|self| <= max`, decided exactly on the decimal digits (no float conversion).
    pub fn abs_at_most(&self, max: u64) -> bool {
        let text = match &self.0 {
            N::PosInt(n) => return *n <= max,
            N::NegInt(n) => return n.unsigned_abs() <= max,
            N::Other(text) => text.trim_start_matches('-'),
        };
        // `text` follows JSON's grammar: digits, maybe `.digits`, maybe `e[+-]digits`.
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], text[i + 1..].trim_start_matches('+')),
            None => (text, "0"),
        };
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
        let Some(first) = digits.iter().position(|&d| d != b'0') else {
            return true; // zero
        };
        let digits = &digits[first..];
        // The decimal point sits `point` digits into `digits`.
        let exponent: i64 = match exponent.parse() {
            Ok(e) => e,
            // Beyond i64: 10^huge is out of range, 10^-huge is within it.
            Err(_) => return exponent.starts_with('-'),
        };
        let point = (whole.len() as i64 - first as i64).saturating_add(exponent);
        let max_digits = max.to_string();
        if point <= 0 {
            return max > 0; // |x| < 1
        }
        if point > max_digits.len() as i64 {
            return false;
        }
        let point = point as usize;
        let mut integer = 0u64;
        for i in 0..point {
            let d = digits.get(i).map_or(0, |d| u64::from(d - b'0'));
            integer = integer * 10 + d;
        }
        let rest_is_zero = digits.iter().skip(point).all(|&d| d == b'0');
        integer < max || (integer == max && rest_is_zero)
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            N::PosInt(n) => write!(f, "{n}"),
            N::NegInt(n) => write!(f, "{n}"),
            N::Other(text) => f.write_str(text),
        }
    }
}

/// A JSON object: keys in insertion order, each once.
#[derive(Debug, Clone, Default)]
pub struct Map {
    entries: Vec<(String, Value)>,
}

impl Eq for Map {}

impl PartialEq for Map {
    /// Objects are equal when they hold the same keys with equal values, in any order.
    fn eq(&self, other: &Map) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key)
    }

    /// Sets `key`, in its old place if it had one; returns the value it replaced.
    pub fn insert(&mut self, key: String, value: Value) -> Option<Value> {
        match self.position(&key) {
            Some(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Takes `key` out, keeping the others in order.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.position(key).map(|i| self.entries.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &Value)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Value)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&String, &mut Value) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// Builds a map from parsed members: a key seen again keeps its first place and takes the
    /// later value. Small objects are searched linearly; large ones through a throwaway hash
    /// index, so a document with many keys costs linear time, not quadratic.
    fn from_members(members: Vec<(String, Value)>) -> Map {
        const SMALL: usize = 16;
        let mut map = Map {
            entries: Vec::with_capacity(members.len()),
        };
        if members.len() <= SMALL {
            for (k, v) in members {
                map.insert(k, v);
            }
            return map;
        }
        // Open addressing over indices into `map.entries`, at most half full.
        let slots = (members.len() * 2).next_power_of_two();
        let mut index = vec![u32::MAX; slots];
        for (k, v) in members {
            let mut slot = fnv1a(k.as_bytes()) as usize & (slots - 1);
            loop {
                match index[slot] {
                    u32::MAX => {
                        index[slot] = map.entries.len() as u32;
                        map.entries.push((k, v));
                        break;
                    }
                    i if map.entries[i as usize].0 == k => {
                        map.entries[i as usize].1 = v;
                        break;
                    }
                    _ => slot = (slot + 1) & (slots - 1),
                }
            }
        }
        map
    }
}

/// FNV-1a: a small, fixed hash (only for de-duplicating one document's keys).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a String, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Value)>,
        fn(&'a (String, Value)) -> (&'a String, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl FromIterator<(String, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (String, Value)>>(iter: I) -> Map {
        let mut map = Map::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl Extend<(String, Value)> for Map {
    fn extend<I: IntoIterator<Item = (String, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

/// What [`Value::get`] accepts: an object key or an array index.
pub trait Key {
    fn find<'v>(&self, v: &'v Value) -> Option<&'v Value>;
    fn find_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value>;
}

impl Key for str {
    fn find<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        v.as_object()?.get(self)
    }
    fn find_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        v.as_object_mut()?.get_mut(self)
    }
}

impl Key for String {
    fn find<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        Key::find(self.as_str(), v)
    }
    fn find_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        Key::find_mut(self.as_str(), v)
    }
}

impl Key for usize {
    fn find<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        v.as_array()?.get(*self)
    }
    fn find_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        v.as_array_mut()?.get_mut(*self)
    }
}

impl<K: Key + ?Sized> Key for &K {
    fn find<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        (**self).find(v)
    }
    fn find_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        (**self).find_mut(v)
    }
}

static NULL: Value = Value::Null;

impl Value {
    pub fn get<K: Key>(&self, key: K) -> Option<&Value> {
        key.find(self)
    }

    pub fn get_mut<K: Key>(&mut self, key: K) -> Option<&mut Value> {
        key.find_mut(self)
    }

    /// The value at a JSON Pointer (RFC 6901: `/a/0/b`, `~1` for `/`, `~0` for `~`).
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        pointer_tokens(pointer)?
            .into_iter()
            .try_fold(self, |v, token| token.find(v))
    }

    /// [`Value::pointer`], for changing what it points at.
    pub fn pointer_mut(&mut self, pointer: &str) -> Option<&mut Value> {
        pointer_tokens(pointer)?
            .into_iter()
            .try_fold(self, |v, token| token.find_mut(v))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_array_mut(&mut self) -> Option<&mut Vec<Value>> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_))
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Value::Number(_))
    }

    pub fn is_boolean(&self) -> bool {
        matches!(self, Value::Bool(_))
    }

    pub fn is_u64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_u64())
    }

    /// Takes the value out, leaving `null`.
    pub fn take(&mut self) -> Value {
        std::mem::take(self)
    }
}

/// The reference tokens of a JSON Pointer, unescaped; `None` if it does not start with `/`.
fn pointer_tokens(pointer: &str) -> Option<Vec<PointerToken>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let tokens = pointer.strip_prefix('/')?.split('/');
    Some(
        tokens
            .map(|t| PointerToken(t.replace("~1", "/").replace("~0", "~")))
            .collect(),
    )
}

/// One step of a JSON Pointer: a member name, or an index into an array.
struct PointerToken(String);

impl Key for PointerToken {
    fn find<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        match v {
            Value::Object(map) => map.get(&self.0),
            Value::Array(items) => items.get(array_index(&self.0)?),
            _ => None,
        }
    }
    fn find_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        match v {
            Value::Object(map) => map.get_mut(&self.0),
            Value::Array(items) => items.get_mut(array_index(&self.0)?),
            _ => None,
        }
    }
}

/// A JSON Pointer array index: digits, no leading zero (RFC 6901).
fn array_index(token: &str) -> Option<usize> {
    let digits = token.bytes().all(|b| b.is_ascii_digit());
    if !digits || token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

impl std::ops::Index<&str> for Value {
    type Output = Value;
    /// The member, or `null` when there is none (or this is not an object).
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl std::ops::Index<usize> for Value {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        self.get(i).unwrap_or(&NULL)
    }
}

impl std::ops::IndexMut<&str> for Value {
    /// The member, inserted as `null` when missing; `null` itself becomes an object first.
    /// (Any other value has no members: that is a bug in the caller, and panics.)
    fn index_mut(&mut self, key: &str) -> &mut Value {
        if self.is_null() {
            *self = Value::Object(Map::new());
        }
        let Value::Object(map) = self else {
            panic!("cannot set the member {key} of a non-object JSON value")
        };
        let i = match map.position(key) {
            Some(i) => i,
            None => {
                map.entries.push((key.to_string(), Value::Null));
                map.entries.len() - 1
            }
        };
        &mut map.entries[i].1
    }
}

impl std::ops::IndexMut<usize> for Value {
    /// The item; past the end of the array (or on anything else) a bug in the caller: panics.
    fn index_mut(&mut self, i: usize) -> &mut Value {
        match self.get_mut(i) {
            Some(v) => v,
            None => panic!("no item {i} in this JSON value"),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::String(s.clone())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::Number(Number(N::PosInt(n)))
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Value {
        match u64::try_from(n) {
            Ok(n) => Value::from(n),
            Err(_) => Value::Number(Number(N::NegInt(n))),
        }
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::from(u64::from(n))
    }
}

impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::from(i64::from(n))
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::from(n as u64)
    }
}

impl From<Map> for Value {
    fn from(map: Map) -> Value {
        Value::Object(map)
    }
}

impl From<&Value> for Value {
    fn from(v: &Value) -> Value {
        v.clone()
    }
}

impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::Array(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Clone + Into<Value>> From<&[T]> for Value {
    fn from(items: &[T]) -> Value {
        Value::Array(items.iter().cloned().map(Into::into).collect())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl<T: Into<Value>> FromIterator<T> for Value {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Value {
        Value::Array(iter.into_iter().map(Into::into).collect())
    }
}

impl PartialEq<str> for Value {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for Value {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl fmt::Display for Value {
    /// Compact JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_string(self))
    }
}

/// Compact JSON text of `v`.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

/// Compact JSON of `v`, as bytes.
pub fn to_vec(v: &Value) -> Vec<u8> {
    to_string(v).into_bytes()
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value(out, v);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal: `"`, `\` and control characters escaped, the rest as UTF-8.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // (`get`: the indices are at ASCII bytes, so always on character boundaries.)
        out.push_str(s.get(plain..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(s.get(plain..).unwrap_or_default());
    out.push('"');
}

/// A syntax error: what, and where (1-based line and column, columns in bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: &'static str,
    line: usize,
    column: usize,
}

impl Error {
    pub fn line(&self) -> usize {
        self.line
    }

    pub fn column(&self) -> usize {
        self.column
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for Error {}

/// Parses one JSON document (surrounding whitespace allowed).
pub fn from_str(text: &str) -> Result<Value, Error> {
    from_slice(text.as_bytes())
}

/// Parses one JSON document from bytes, which must be UTF-8.
pub fn from_slice(bytes: &[u8]) -> Result<Value, Error> {
    let mut p = Parser { bytes, at: 0 };
    let value = p.value(0)?;
    p.skip_whitespace();
    if p.at < bytes.len() {
        p.at += 1;
        return Err(p.error("trailing characters"));
    }
    Ok(value)
}

struct Parser<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, message: &'static str) -> Error {
        let seen = &self.bytes[..self.at.min(self.bytes.len())];
        let line = seen.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = seen.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        Error {
            message,
            line,
            column: seen.len() - line_start,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        self.skip_whitespace();
        let Some(b) = self.peek() else {
            return Err(self.error("EOF while parsing a value"));
        };
        match b {
            b'n' => self.word("null", Value::Null),
            b't' => self.word("true", Value::Bool(true)),
            b'f' => self.word("false", Value::Bool(false)),
            b'"' => self.string().map(Value::String),
            b'-' | b'0'..=b'9' => self.number(),
            b'[' | b'{' if depth + 1 >= MAX_DEPTH => {
                self.at += 1;
                Err(self.error("recursion limit exceeded"))
            }
            b'[' => self.array(depth + 1),
            b'{' => self.object(depth + 1),
            _ => {
                self.at += 1;
                Err(self.error("expected value"))
            }
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, Error> {
        for expected in word.bytes() {
            match self.peek() {
                None => return Err(self.error("EOF while parsing a value")),
                Some(b) => {
                    self.at += 1;
                    if b != expected {
                        return Err(self.error("expected ident"));
                    }
                }
            }
        }
        Ok(value)
    }

    fn array(&mut self, depth: usize) -> Result<Value, Error> {
        self.at += 1; // [
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.at += 1;
                        return Err(self.error("trailing comma"));
                    }
                }
                Some(b']') => {
                    self.at += 1;
                    return Ok(Value::Array(items));
                }
                Some(_) => {
                    self.at += 1;
                    return Err(self.error("expected `,` or `]`"));
                }
                None => return Err(self.error("EOF while parsing a list")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, Error> {
        self.at += 1; // {
        let mut members = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(Map::new()));
        }
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => {}
                Some(b'}') if !members.is_empty() => {
                    self.at += 1;
                    return Err(self.error("trailing comma"));
                }
                Some(_) => {
                    self.at += 1;
                    return Err(self.error("key must be a string"));
                }
                None => return Err(self.error("EOF while parsing an object")),
            }
            let key = self.string()?;
            self.skip_whitespace();
            match self.peek() {
                Some(b':') => self.at += 1,
                Some(_) => {
                    self.at += 1;
                    return Err(self.error("expected `:`"));
                }
                None => return Err(self.error("EOF while parsing an object")),
            }
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Value::Object(Map::from_members(members)));
                }
                Some(_) => {
                    self.at += 1;
                    return Err(self.error("expected `,` or `}`"));
                }
                None => return Err(self.error("EOF while parsing an object")),
            }
        }
    }

    /// A string literal, the opening quote next.
    fn string(&mut self) -> Result<String, Error> {
        self.at += 1; // "
        let mut out = Vec::new();
        loop {
            let start = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            out.extend_from_slice(&self.bytes[start..self.at]);
            match self.peek() {
                None => return Err(self.error("EOF while parsing a string")),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(out)
                        .map_err(|_| self.error("invalid unicode code point"));
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => {
                    self.at += 1;
                    return Err(self.error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
            }
        }
    }

    /// The escape after a backslash, appended to `out` as UTF-8.
    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let Some(b) = self.peek() else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.at += 1;
        let plain = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let c = self.unicode_escape()?;
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                return Ok(());
            }
            _ => return Err(self.error("invalid escape")),
        };
        out.push(plain);
        Ok(())
    }

    /// `XXXX` after `\u`, with the low surrogate of a pair if it is a high one.
    fn unicode_escape(&mut self) -> Result<char, Error> {
        let first = self.hex4()?;
        let code = match first {
            0xDC00..=0xDFFF => return Err(self.error("lone leading surrogate in hex escape")),
            0xD800..=0xDBFF => {
                if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                    self.at = (self.at + 1).min(self.bytes.len());
                    return Err(self.error("unexpected end of hex escape"));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            _ => first,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode code point"))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        if self.bytes.len() - self.at < 4 {
            self.at = self.bytes.len();
            return Err(self.error("EOF while parsing a string"));
        }
        let mut n = 0;
        for _ in 0..4 {
            let Some(b) = self.peek() else {
                return Err(self.error("EOF while parsing a string"));
            };
            self.at += 1;
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(self.error("invalid escape")),
            };
            n = n * 16 + u32::from(digit);
        }
        Ok(n)
    }

    /// A number by JSON's grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<Value, Error> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    self.at += 1;
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            Some(_) => {
                self.at += 1;
                return Err(self.error("invalid number"));
            }
            None => return Err(self.error("EOF while parsing a value")),
        }
        let integer_end = self.at;
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.required_digits()?;
        }
        // ASCII only, so this is valid UTF-8.
        let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or_default();
        let n = if self.at == integer_end {
            if negative {
                // (`-0` stays text, to print as written.)
                text.parse().ok().filter(|&n| n < 0).map(N::NegInt)
            } else {
                text.parse().ok().map(N::PosInt)
            }
        } else {
            None
        };
        let n = n.unwrap_or_else(|| N::Other(text.into()));
        Ok(Value::Number(Number(n)))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            Some(_) => {
                self.at += 1;
                Err(self.error("invalid number"))
            }
            None => Err(self.error("EOF while parsing a value")),
        }
    }
}

/// What `json!` turns an expression into: by reference, like `serde_json`'s `json!`, so the
/// expression stays usable after.
pub trait ToJson {
    fn to_json(&self) -> Value;
}

impl ToJson for Value {
    fn to_json(&self) -> Value {
        self.clone()
    }
}

impl ToJson for Map {
    fn to_json(&self) -> Value {
        Value::Object(self.clone())
    }
}

impl ToJson for str {
    fn to_json(&self) -> Value {
        Value::String(self.to_string())
    }
}

impl ToJson for String {
    fn to_json(&self) -> Value {
        Value::String(self.clone())
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Value {
        Value::Bool(*self)
    }
}

macro_rules! integers_to_json {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn to_json(&self) -> Value {
                Value::from(*self)
            }
        }
    )*};
}
integers_to_json!(u64, i64, u32, i32, usize);

impl ToJson for f64 {
    /// As `Number::from_f64` prints it; `null` when not finite.
    fn to_json(&self) -> Value {
        Number::from_f64(*self).map_or(Value::Null, Value::Number)
    }
}

macro_rules! eq_integers {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for Value {
            fn eq(&self, other: &$t) -> bool {
                match i64::try_from(*other) {
                    Ok(n) => self.as_i64() == Some(n),
                    Err(_) => u64::try_from(*other).is_ok_and(|n| self.as_u64() == Some(n)),
                }
            }
        }
    )*};
}
eq_integers!(u64, i64, u32, i32, usize);

impl PartialEq<bool> for Value {
    fn eq(&self, other: &bool) -> bool {
        self.as_bool() == Some(*other)
    }
}

impl<T: ToJson + ?Sized> ToJson for &T {
    fn to_json(&self) -> Value {
        (**self).to_json()
    }
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToJson::to_json)
    }
}

impl<T: ToJson> ToJson for [T] {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(ToJson::to_json).collect())
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Value {
        self.as_slice().to_json()
    }
}

/// Builds a [`Value`] from JSON-like syntax: `json!({"type": "text", "text": {"body": body}})`.
/// Keys are string literals (or variables); a value is `null`, a nested object or array, or any Rust
/// expression with a `From` conversion into [`Value`].
#[macro_export]
macro_rules! json {
    (@key $key:literal) => { ::std::string::String::from($key) };
    (@key $key:ident) => { ::std::string::ToString::to_string(&$key) };
    (null) => { $crate::json::Value::Null };
    ([]) => { $crate::json::Value::Array(::std::vec::Vec::new()) };
    ([ $($items:tt)+ ]) => {
        $crate::json::Value::Array($crate::json!(@items [] $($items)+))
    };
    ({}) => { $crate::json::Value::Object($crate::json::Map::new()) };
    ({ $($members:tt)+ }) => {{
        let mut members = $crate::json::Map::new();
        $crate::json!(@members members $($members)+);
        $crate::json::Value::Object(members)
    }};
    // Array items, gathered into `[$done,*]`.
    (@items [$($done:expr),*]) => { ::std::vec![$($done),*] };
    (@items [$($done:expr),*] , $($rest:tt)*) => { $crate::json!(@items [$($done),*] $($rest)*) };
    (@items [$($done:expr),*] null $($rest:tt)*) => {
        $crate::json!(@items [$($done,)* $crate::json::Value::Null] $($rest)*)
    };
    (@items [$($done:expr),*] [$($array:tt)*] $($rest:tt)*) => {
        $crate::json!(@items [$($done,)* $crate::json!([$($array)*])] $($rest)*)
    };
    (@items [$($done:expr),*] {$($object:tt)*} $($rest:tt)*) => {
        $crate::json!(@items [$($done,)* $crate::json!({$($object)*})] $($rest)*)
    };
    (@items [$($done:expr),*] $item:expr , $($rest:tt)*) => {
        $crate::json!(@items [$($done,)* $crate::json::ToJson::to_json(&$item)] $($rest)*)
    };
    (@items [$($done:expr),*] $item:expr) => {
        $crate::json!(@items [$($done,)* $crate::json::ToJson::to_json(&$item)])
    };
    // Object members, inserted into `$map` one by one.
    (@members $map:ident) => {};
    (@members $map:ident , $($rest:tt)*) => { $crate::json!(@members $map $($rest)*) };
    (@members $map:ident $key:tt : null $($rest:tt)*) => {
        $map.insert($crate::json!(@key $key), $crate::json::Value::Null);
        $crate::json!(@members $map $($rest)*);
    };
    (@members $map:ident $key:tt : [$($array:tt)*] $($rest:tt)*) => {
        $map.insert($crate::json!(@key $key), $crate::json!([$($array)*]));
        $crate::json!(@members $map $($rest)*);
    };
    (@members $map:ident $key:tt : {$($object:tt)*} $($rest:tt)*) => {
        $map.insert($crate::json!(@key $key), $crate::json!({$($object)*}));
        $crate::json!(@members $map $($rest)*);
    };
    (@members $map:ident $key:tt : $value:expr , $($rest:tt)*) => {
        $map.insert($crate::json!(@key $key), $crate::json::ToJson::to_json(&$value));
        $crate::json!(@members $map $($rest)*);
    };
    (@members $map:ident $key:tt : $value:expr) => {
        $map.insert($crate::json!(@key $key), $crate::json::ToJson::to_json(&$value));
    };
    ($other:expr) => { $crate::json::ToJson::to_json(&$other) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any JSON document, as serde_json models it.
    fn any_document() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
            "[\"\\\\\\u{0}-\\u{1f}\\u{7f}é😀]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                prop::collection::vec(("[a-c]{0,2}|\\PC{0,4}", inner), 0..6).prop_map(|members| {
                    serde_json::Value::Object(members.into_iter().collect())
                }),
            ]
        })
    }

    fn serde_of(v: &Value) -> serde_json::Value {
        serde_json::from_str(&to_string(v)).expect("our output is JSON")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// What serde_json writes, we read back to the same document, and what we write,
        /// serde_json reads back to it too.
        #[test]
        fn documents_round_trip_with_serde_json(doc in any_document()) {
            let text = serde_json::to_string(&doc).unwrap();
            let ours = from_str(&text).unwrap();
            // Byte for byte: same order, same escapes, numbers as written.
            prop_assert_eq!(to_string(&ours), text);
            let pretty = serde_json::to_string_pretty(&doc).unwrap();
            prop_assert_eq!(from_str(&pretty).unwrap(), ours);
        }

        /// Mangled documents: we accept exactly what serde_json accepts, and read it alike.
        #[test]
        fn broken_documents_are_refused_like_serde_json_refuses_them(
            doc in any_document(),
            cut in any::<prop::sample::Index>(),
            insert in prop::sample::select(vec!["", ",", "]", "}", "\"", "\\", ":", "{", "[", "-", "0", "e", ".", "\u{1}", " "]),
        ) {
            let text = serde_json::to_string(&doc).unwrap();
            let at = cut.index(text.len() + 1);
            let Some((head, tail)) = text.get(..at).zip(text.get(at..)) else {
                return Ok(());
            };
            for broken in [format!("{head}{insert}{tail}"), format!("{head}{insert}")] {
                let theirs = serde_json::from_str::<serde_json::Value>(&broken);
                // A number past f64's range: serde_json refuses it, we keep it as written.
                if theirs.as_ref().is_err_and(|e| e.to_string().starts_with("number out of range")) {
                    continue;
                }
                match (from_str(&broken), theirs) {
                    (Ok(ours), Ok(theirs)) => prop_assert_eq!(serde_of(&ours), theirs),
                    (Err(_), Err(_)) => {}
                    (ours, theirs) => prop_assert!(false, "{broken:?}: ours {ours:?}, serde_json {theirs:?}"),
                }
            }
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_first_place_and_its_last_value() {
        let v = from_str(r#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(to_string(&v), r#"{"a":3,"b":2}"#);
        // The same through the large-object path.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\": {i}")).collect();
        let text = format!("{{{}, \"k0\": \"again\"}}", many.join(", "));
        let v = from_str(&text).unwrap();
        let map = v.as_object().unwrap();
        assert_eq!(map.len(), 40);
        assert_eq!(map.keys().next().unwrap(), "k0");
        assert_eq!(v["k0"], "again");
        assert_eq!(v["k39"], 39);
    }

    #[test]
    fn an_object_with_many_keys_parses_in_linear_time() {
        // 200,000 keys: quadratic de-duplication would be 2 * 10^10 comparisons.
        let members: Vec<String> = (0..200_000).map(|i| format!("\"{i}\":0")).collect();
        let v = from_str(&format!("{{{}}}", members.join(","))).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 200_000);
    }

    #[test]
    fn nesting_stops_where_serde_json_stops_it() {
        for depth in [1, 126, 127, 128, 129, 10_000] {
            let text = "[".repeat(depth) + &"]".repeat(depth);
            let theirs = serde_json::from_str::<serde_json::Value>(&text);
            let ours = from_str(&text);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{depth} levels");
            if let Err(e) = ours {
                assert!(e.to_string().starts_with("recursion limit exceeded"), "{e}");
            }
        }
    }

    #[test]
    fn syntax_errors_say_what_and_where_like_serde_json() {
        for text in [
            "",
            "{",
            "[1,",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":1,}",
            "[1,]",
            "{1:2}",
            "nul",
            "tru",
            "01",
            "1.",
            "-",
            "1e",
            ".5",
            "+1",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"a\u{1}\"",
            "\"abc",
            "1 2",
            "{\"a\":1}\n  x",
            "[\n1,\n\n 2 x]",
            "\"\\u12\"",
        ] {
            let theirs = serde_json::from_str::<serde_json::Value>(text).unwrap_err();
            let ours = from_str(text).unwrap_err();
            assert_eq!(ours.to_string(), theirs.to_string(), "{text:?}");
        }
    }

    #[test]
    fn strings_are_escaped_as_json_needs_and_no_more() {
        let v = Value::from("a\"b\\c\n\t\u{1}é😀/");
        assert_eq!(to_string(&v), "\"a\\\"b\\\\c\\n\\t\\u0001é😀/\"");
        assert_eq!(from_str(&to_string(&v)).unwrap(), v);
        assert_eq!(
            from_str(r#""\ud83d\ude00 \u00e9""#).unwrap(),
            Value::from("😀 é")
        );
    }

    #[test]
    fn numbers_print_as_written() {
        for text in [
            "0",
            "-0",
            "12",
            "-7",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "1.50",
            "1e400",
            "-2.5E-3",
            "37.4847",
        ] {
            assert_eq!(to_string(&from_str(text).unwrap()), text);
        }
        assert_eq!(
            from_str("18446744073709551615").unwrap().as_u64(),
            Some(u64::MAX)
        );
        assert_eq!(from_str("-3").unwrap().as_i64(), Some(-3));
        assert_eq!(from_str("3.0").unwrap().as_u64(), None);
    }

    #[test]
    fn magnitudes_are_compared_on_the_digits() {
        let within = |text: &str, max| match from_str(text).unwrap() {
            Value::Number(n) => n.abs_at_most(max),
            _ => unreachable!(),
        };
        for (text, max, expected) in [
            ("90", 90, true),
            ("90.0", 90, true),
            ("90.0001", 90, false),
            ("-90.00", 90, true),
            ("-90.5", 90, false),
            ("89.999999", 90, true),
            ("0.0000", 90, true),
            ("9e1", 90, true),
            ("9.0001e1", 90, false),
            ("1e2", 180, true),
            ("1.81e2", 180, false),
            ("0.005e3", 90, true),
            ("123456789e-7", 90, true),
            ("1e-99999999999999999999", 90, true),
            ("1e99999999999999999999", 90, false),
            ("180.0000000000000000001", 180, false),
            ("-0", 90, true),
            ("91", 90, false),
            ("1000", 180, false),
        ] {
            assert_eq!(within(text, max), expected, "{text} within {max}");
        }
    }

    #[test]
    fn pointers_follow_rfc_6901() {
        let v = from_str(r#"{"a/b": {"~k": [10, 20]}, "": 1}"#).unwrap();
        assert_eq!(v.pointer("/a~1b/~0k/1"), Some(&Value::from(20u64)));
        assert_eq!(v.pointer("/"), Some(&Value::from(1u64)));
        assert_eq!(v.pointer(""), Some(&v));
        assert_eq!(v.pointer("/a~1b/~0k/01"), None);
        assert_eq!(v.pointer("a"), None);
    }

    #[test]
    fn json_macro_builds_what_serde_json_builds() {
        let name = "x".to_string();
        let missing: Option<&str> = None;
        let kind = "image";
        let ours = json!({"type": kind, kind: {"id": name, "n": [1, null, true, {"a": missing}]}, "e": []});
        let theirs = serde_json::json!({"type": kind, kind: {"id": name, "n": [1, null, true, {"a": missing}]}, "e": []});
        assert_eq!(serde_of(&ours), theirs);
        assert_eq!(name, "x", "json! takes its values by reference");
    }
}
