//! A fast path for decoding the engine's most common command records.
//!
//! msgspec's typed decode runs a Python `re` pattern for every identifier, and the duplicate
//! key proof decodes the record a second time: together most of the pipeline's cost. Here one
//! pass over the bytes both parses and checks every constraint the schema declares, and
//! builds the same msgspec Struct by calling its class.
//!
//! The contract is one-sided: a Struct is returned only when the pure path (msgspec decode,
//! then no duplicate key) would have returned an equal one. Anything unusual -- an escape,
//! a byte outside printable ASCII, a float, a nested value, a repeated or unknown key, a
//! value out of range, a command type not listed here -- gives `None`, and the caller runs
//! the pure path, which alone decides every dead letter's reason and detail. Refusing is
//! always safe, so this scanner stays small rather than complete: it takes the tag only as the
//! first key (where msgspec writes it), and the fields in any order, the declared one
//! cheapest.
//!
//! Texts that recur (technology and participant ids, sides, order types) come from a fixed
//! table of Python strings, so most records allocate one string (the client order id) and
//! the engine's dictionaries find those keys' hashes already computed.
#![forbid(unsafe_code)]

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyString, PyTuple};
use std::sync::{Mutex, TryLockError};

/// Slots for a command's fields: more than the largest command has.
const MAX_KEYS: usize = 24;
/// An identifier's longest length (schemas/common.py `Identifier`).
const MAX_IDENTIFIER: usize = 64;
/// A display text's longest length (schemas/common.py `DisplayText`).
const MAX_DISPLAY_TEXT: usize = 200;

/// Bytes a string may hold on the fast path: printable ASCII but the quote and backslash.
static PLAIN: [bool; 256] = byte_table(b" !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~");
/// Bytes an identifier may hold after its first: ASCII letters, digits and `._:-`.
static IDENTIFIER: [bool; 256] =
    byte_table(b"-.0123456789:ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz");

const fn byte_table(members: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < members.len() {
        table[members[i] as usize] = true;
        i += 1;
    }
    table
}

/// How a field is checked and what it holds when the record leaves it out.
#[derive(Clone, Copy)]
enum Kind {
    /// Required `Identifier`.
    Ident,
    /// `Identifier | None = None`.
    OptIdent,
    /// Required plain `str` (side, action, mode: the market judges the value).
    Text,
    /// Plain `str` with this default.
    TextOr(&'static str),
    /// Required `DisplayText`.
    Display,
    /// Required int64.
    Int,
    /// `int64 | None = None`.
    OptInt,
    /// `LogTimeMs | None = None`: 0..=int64 max.
    OptLogTime,
    /// `bool = False`.
    BoolOrFalse,
}

struct Field {
    name: &'static str,
    kind: Kind,
    /// Whether its texts recur across records (ids of technologies and participants, sides,
    /// order types...): those come from the decoder's bounded cache of Python strings.
    shared: bool,
}

/// A field whose texts are unique per record (a client order id, a display name) or a number.
const fn f(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        shared: false,
    }
}

/// A field whose texts recur: see `Field::shared`.
const fn s(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        shared: true,
    }
}

/// The commands covered, by tag, with their fields in the Structs' declaration order (the
/// Python side checks it against `__struct_fields__` before using this module).
/// `register_participant` (two lists) is left to the pure path.
static COMMANDS: &[(&str, &[Field])] = &[
    (
        "place_order",
        &[
            s("technology_id", Kind::Ident),
            s("participant_id", Kind::Ident),
            f("client_order_id", Kind::Ident),
            s("side", Kind::Text),
            f("quantity", Kind::Int),
            s("order_type", Kind::TextOr("limit")),
            f("price", Kind::OptInt),
            s("time_in_force", Kind::TextOr("gtc")),
            f("expires_at_ms", Kind::OptLogTime),
            f("post_only", Kind::BoolOrFalse),
            s("submitted_by", Kind::OptIdent),
        ],
    ),
    (
        "cancel_order",
        &[
            s("technology_id", Kind::Ident),
            s("participant_id", Kind::Ident),
            f("client_order_id", Kind::Ident),
            s("submitted_by", Kind::OptIdent),
        ],
    ),
    (
        "amend_order",
        &[
            s("technology_id", Kind::Ident),
            s("participant_id", Kind::Ident),
            f("client_order_id", Kind::Ident),
            f("quantity", Kind::OptInt),
            f("price", Kind::OptInt),
            s("submitted_by", Kind::OptIdent),
        ],
    ),
    (
        "manage_listing",
        &[
            s("technology_id", Kind::Ident),
            s("participant_id", Kind::Ident),
            s("action", Kind::Text),
            s("submitted_by", Kind::OptIdent),
        ],
    ),
    (
        "list_technology",
        &[
            s("technology_id", Kind::Ident),
            s("participant_id", Kind::Ident),
            f("name", Kind::Display),
            f("tick_size", Kind::Int),
            f("lot_size", Kind::Int),
            s("mechanism", Kind::TextOr("continuous")),
            f("reserve_price", Kind::OptInt),
            f("starting_price", Kind::OptInt),
            f("min_increment", Kind::OptInt),
            f("ends_at_ms", Kind::OptLogTime),
            f("reserve_shown", Kind::BoolOrFalse),
            f("soft_close_window_ms", Kind::OptInt),
            f("soft_close_extension_ms", Kind::OptInt),
            f("buy_now_price", Kind::OptInt),
            f("first_uncross_at_ms", Kind::OptLogTime),
            f("call_interval_ms", Kind::OptInt),
            f("price_step", Kind::OptInt),
            f("step_interval_ms", Kind::OptInt),
            f("offered_quantity", Kind::OptInt),
            s("submitted_by", Kind::OptIdent),
        ],
    ),
    (
        "suspend_participant",
        &[
            s("participant_id", Kind::Ident),
            s("member_id", Kind::Ident),
            s("submitted_by", Kind::OptIdent),
        ],
    ),
    (
        "reinstate_participant",
        &[
            s("participant_id", Kind::Ident),
            s("member_id", Kind::Ident),
            s("submitted_by", Kind::OptIdent),
        ],
    ),
    (
        "set_access_mode",
        &[
            s("participant_id", Kind::Ident),
            s("mode", Kind::Text),
            s("submitted_by", Kind::OptIdent),
        ],
    ),
];

/// Texts that recur in almost every record: interned when first cached, so the engine's
/// comparisons with its own literals ("bid", "limit"...) find the same object.
const COMMON_TEXTS: &[&str] = &[
    "bid",
    "offer",
    "limit",
    "market",
    "gtc",
    "ioc",
    "fok",
    "gtd",
    "continuous",
    "call",
    "english",
    "sealed_first",
    "sealed_second",
    "dutch",
    "halt",
    "resume",
    "close",
    "withdraw",
    "open",
    "members_only",
];

/// A field's value as the record spells it, already checked against the field's kind.
#[derive(Clone, Copy)]
enum Value<'a> {
    /// A string of printable ASCII without escapes, quotes excluded.
    Str(&'a [u8]),
    Int(i64),
    Bool(bool),
    Null,
}

/// A cursor over the record. Every method returns `None` for "not on the fast path".
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// JSON's four whitespace bytes, which msgspec allows around every token.
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// The key `name` exactly, quotes included, without scanning it byte by byte: a key is
    /// the text up to its first unescaped quote, and no field name holds a quote or an escape.
    fn key_is(&mut self, name: &str) -> bool {
        let name = name.as_bytes();
        let end = self.at + name.len() + 2;
        match self.bytes.get(self.at..end) {
            Some([b'"', middle @ .., b'"']) if same(middle, name) => {
                self.at = end;
                true
            }
            _ => false,
        }
    }

    /// The colon between a key and its value, with the whitespace around it.
    fn colon(&mut self) -> Option<()> {
        self.skip_whitespace();
        self.expect(b':')?;
        self.skip_whitespace();
        Some(())
    }

    /// A string's contents. Only printable ASCII (no escapes): its bytes are then exactly
    /// the decoded characters, so lengths and patterns can be checked on the bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let rest = self.bytes.get(self.at..)?;
        let length = rest.iter().position(|&c| !PLAIN[usize::from(c)])?;
        if rest[length] != b'"' {
            return None; // an escape, a control or a non-ASCII byte
        }
        self.at += length + 1;
        Some(&rest[..length])
    }

    /// A string that is an `Identifier` (schemas/common.py): 1 to 64 of [A-Za-z0-9._:-],
    /// starting with a letter or digit, checked in the one pass that finds its end.
    fn identifier(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let rest = self.bytes.get(self.at..)?;
        if !rest.first()?.is_ascii_alphanumeric() {
            return None;
        }
        // The quote is not an identifier byte: the first non-identifier byte must be it.
        let length = rest.iter().position(|&c| !IDENTIFIER[usize::from(c)])?;
        if rest[length] != b'"' || length > MAX_IDENTIFIER {
            return None;
        }
        self.at += length + 1;
        Some(&rest[..length])
    }

    /// An integer in JSON's grammar that fits int64. "-0" is refused: msgspec reads it as 0,
    /// but nothing common writes it, so the pure path may decide it.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let digits = &self.bytes[start..self.at];
        // 19 digits hold every int64; a leading zero is not JSON (or is "-0").
        if digits.is_empty()
            || digits.len() > 19
            || (digits[0] == b'0' && (digits.len() > 1 || negative))
        {
            return None;
        }
        // 19 digits are below 10^19 < 2^64: no overflow.
        let magnitude = digits
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        // A fraction or exponent that follows is left for the caller, which refuses it.
        if negative {
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(magnitude).ok()
        }
    }

    /// A value that passes every constraint msgspec checks for a field of `kind`.
    fn value(&mut self, kind: Kind) -> Option<Value<'a>> {
        Some(match (self.peek()?, kind) {
            (b'"', Kind::Ident | Kind::OptIdent) => Value::Str(self.identifier()?),
            (b'"', Kind::Text | Kind::TextOr(_)) => Value::Str(self.string()?),
            (b'"', Kind::Display) => {
                Value::Str(self.string().filter(|text| is_display_text(text))?)
            }
            (b'-' | b'0'..=b'9', Kind::Int | Kind::OptInt) => Value::Int(self.integer()?),
            (b'0'..=b'9', Kind::OptLogTime) => Value::Int(self.integer()?),
            (b't', Kind::BoolOrFalse) => {
                self.literal(b"true")?;
                Value::Bool(true)
            }
            (b'f', Kind::BoolOrFalse) => {
                self.literal(b"false")?;
                Value::Bool(false)
            }
            (b'n', Kind::OptIdent | Kind::OptInt | Kind::OptLogTime) => {
                self.literal(b"null")?;
                Value::Null
            }
            _ => return None,
        })
    }

    /// The record as one flat object: the tag first (as every msgspec writer puts it), then
    /// the command's fields, each at most once, nothing after it. Fills `slots` in the
    /// fields' order and gives the command's index in `COMMANDS`.
    fn command(&mut self, slots: &mut [Option<Value<'a>>; MAX_KEYS]) -> Option<usize> {
        self.skip_whitespace();
        self.expect(b'{')?;
        self.skip_whitespace();
        if !self.key_is("type") {
            return None; // the tag elsewhere, or escaped: the pure path's
        }
        self.colon()?;
        let tag = self.string()?;
        let index = COMMANDS
            .iter()
            .position(|(name, _)| name.as_bytes() == tag)?;
        let fields = COMMANDS[index].1;
        // Writers put the fields in declaration order: try the one after the last first.
        let mut next = 0;
        loop {
            self.skip_whitespace();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    break;
                }
                _ => return None,
            }
            self.skip_whitespace();
            let at = match fields.get(next) {
                Some(field) if self.key_is(field.name) => next,
                _ => {
                    let key = self.string()?;
                    // Unknown (forbid_unknown_fields), or a second tag: the pure path's.
                    fields
                        .iter()
                        .position(|field| field.name.as_bytes() == key)?
                }
            };
            self.colon()?;
            let value = self.value(fields[at].kind)?;
            if slots[at].replace(value).is_some() {
                return None; // a repeated key: the pure path refuses it
            }
            next = at + 1;
        }
        self.skip_whitespace();
        let complete = fields
            .iter()
            .zip(slots.iter())
            .all(|(field, value)| value.is_some() || field.kind.has_default());
        (complete && self.at == self.bytes.len()).then_some(index)
    }
}

impl Kind {
    /// Whether the record may leave the field out.
    fn has_default(self) -> bool {
        !matches!(self, Kind::Ident | Kind::Text | Kind::Display | Kind::Int)
    }
}

/// `a == b` for two slices of one length, by words where they are long enough: a field name's
/// compare inlined instead of a call to memcmp.
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default());
    let half = |bytes: &[u8]| u32::from_le_bytes(bytes.try_into().unwrap_or_default());
    if n >= 8 {
        // Whole words, then the last word (overlapping) for the rest.
        a.chunks_exact(8)
            .zip(b.chunks_exact(8))
            .all(|(x, y)| word(x) == word(y))
            && word(&a[n - 8..]) == word(&b[n - 8..])
    } else if n >= 4 {
        half(&a[..4]) == half(&b[..4]) && half(&a[n - 4..]) == half(&b[n - 4..])
    } else {
        a == b
    }
}

/// schemas/common.py `DisplayText` for printable ASCII (all the scanner lets through): 1 to 200
/// characters, not all of them spaces. DEL, the one ASCII control above space, never gets here.
fn is_display_text(text: &[u8]) -> bool {
    text.len() <= MAX_DISPLAY_TEXT && text.iter().any(|&c| c != b' ')
}

/// How many Python strings the decoder keeps: the technologies, participants and texts of a
/// busy partition fit, and hostile records that make up new ones only evict, never grow it.
const CACHE_SLOTS: usize = 4096;

/// One cached string: its bytes (up to an identifier's length) and the object.
struct Cached {
    length: u8,
    bytes: [u8; MAX_IDENTIFIER],
    text: Py<PyString>,
}

/// A fixed table of Python strings keyed by their bytes, one per slot, the last one made
/// winning its slot: a repeated id costs a hash and a compare instead of a new object (whose
/// hash Python then also computes again).
struct TextCache {
    slots: Vec<Option<Cached>>,
}

impl TextCache {
    fn new() -> Self {
        Self {
            slots: (0..CACHE_SLOTS).map(|_| None).collect(),
        }
    }

    fn slot(text: &[u8]) -> usize {
        // FxHash's step over the 8-byte words (the last one overlapping), or the bytes of a
        // shorter text: enough spread for ids; a collision only costs a miss.
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let step = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(K);
        let word = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().unwrap_or_default());
        let mut hash = text.len() as u64;
        if text.len() >= 8 {
            for chunk in text.chunks_exact(8) {
                hash = step(hash, word(chunk));
            }
            hash = step(hash, word(&text[text.len() - 8..]));
        } else {
            hash = step(hash, text.iter().fold(0, |w, &b| w << 8 | u64::from(b)));
        }
        // The top bits: below CACHE_SLOTS, so the conversion cannot fail.
        usize::try_from(hash >> (64 - CACHE_SLOTS.trailing_zeros())).unwrap_or(0)
    }

    /// The string for `text` (printable ASCII), from the cache when it is there.
    fn get<'py>(&mut self, py: Python<'py>, text: &[u8]) -> Bound<'py, PyAny> {
        if text.len() > MAX_IDENTIFIER {
            return new_string(py, text).into_any();
        }
        let slot = &mut self.slots[Self::slot(text)];
        match slot {
            Some(cached)
                if usize::from(cached.length) == text.len()
                    && cached.bytes[..text.len()] == *text =>
            {
                cached.text.bind(py).clone().into_any()
            }
            _ => Self::fill(py, slot, text),
        }
    }

    /// A miss: a new string (interned if common) that takes the slot.
    #[cold]
    #[inline(never)]
    fn fill<'py>(py: Python<'py>, slot: &mut Option<Cached>, text: &[u8]) -> Bound<'py, PyAny> {
        let object = match COMMON_TEXTS.iter().find(|known| known.as_bytes() == text) {
            Some(known) => PyString::intern(py, known),
            None => new_string(py, text),
        };
        let mut bytes = [0u8; MAX_IDENTIFIER];
        bytes[..text.len()].copy_from_slice(text);
        *slot = Some(Cached {
            // At most MAX_IDENTIFIER (`get` checked); were it not, 0 would only never match.
            length: u8::try_from(text.len()).unwrap_or(0),
            bytes,
            text: object.clone().unbind(),
        });
        object.into_any()
    }
}

/// A new string of printable ASCII (the scanner lets nothing else through). Python decodes the
/// bytes, which cannot fail but for memory: then `PyString::new` panics, as it does for that.
fn new_string<'py>(py: Python<'py>, text: &[u8]) -> Bound<'py, PyString> {
    PyString::from_bytes(py, text)
        .unwrap_or_else(|_| PyString::new(py, std::str::from_utf8(text).unwrap_or_default()))
}

/// Decodes the common command records into the engine's msgspec Structs, or says "not me".
#[pyclass(frozen, module = "engine._native_codec")]
struct CommandDecoder {
    /// The Struct class of each entry of `COMMANDS`, where the caller gave one.
    classes: Vec<Option<Py<PyAny>>>,
    texts: Mutex<TextCache>,
}

fn object<'py>(
    py: Python<'py>,
    texts: &mut TextCache,
    field: &Field,
    value: Option<Value<'_>>,
) -> Bound<'py, PyAny> {
    match (value, field.kind) {
        (Some(Value::Str(s)), _) if field.shared => texts.get(py, s),
        (Some(Value::Str(s)), _) => new_string(py, s).into_any(),
        (Some(Value::Int(n)), _) => n
            .into_pyobject(py)
            .map_or_else(|e| match e {}, Bound::into_any),
        (Some(Value::Bool(b)), _) => PyBool::new(py, b).to_owned().into_any(),
        (None, Kind::TextOr(default)) => texts.get(py, default.as_bytes()),
        (None, Kind::BoolOrFalse) => PyBool::new(py, false).to_owned().into_any(),
        _ => py.None().into_bound(py),
    }
}

#[pymethods]
impl CommandDecoder {
    /// `classes` maps a command's tag to its Struct class; tags it leaves out stay slow.
    #[new]
    fn new(classes: &Bound<'_, PyDict>) -> PyResult<Self> {
        let mut found = Vec::with_capacity(COMMANDS.len());
        for (tag, _) in COMMANDS {
            found.push(classes.get_item(tag)?.map(Bound::unbind));
        }
        Ok(Self {
            classes: found,
            texts: Mutex::new(TextCache::new()),
        })
    }

    /// The command Struct for a common, canonical, valid record; `None` for anything else.
    /// Anything but `bytes` (a bytearray, a memoryview) is left to the pure path too.
    fn decode<'py>(
        &self,
        py: Python<'py>,
        raw: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Ok(raw) = raw.cast_exact::<PyBytes>() else {
            return Ok(None);
        };
        let mut slots: [Option<Value<'_>>; MAX_KEYS] = [None; MAX_KEYS];
        let Some(index) = (Scanner {
            bytes: raw.as_bytes(),
            at: 0,
        })
        .command(&mut slots) else {
            return Ok(None);
        };
        let Some(class) = &self.classes[index] else {
            return Ok(None);
        };
        let fields = COMMANDS[index].1;
        let mut texts = match self.texts.try_lock() {
            Ok(texts) => texts,
            // A panic mid-insert: every slot is still whole.
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Held: a decode from within a Struct's construction, or another thread where
            // nothing serialises them. Never wait: the pure path decides this one.
            Err(TryLockError::WouldBlock) => return Ok(None),
        };
        let mut objects: [Option<Bound<'py, PyAny>>; MAX_KEYS] = [const { None }; MAX_KEYS];
        for ((field, &value), object_slot) in fields.iter().zip(&slots).zip(&mut objects) {
            *object_slot = Some(object(py, &mut texts, field, value));
        }
        drop(texts);
        // The common arities as a vectorcall from an array: no argument tuple to build.
        let class = class.bind(py);
        let made = match (fields.len(), objects) {
            (3, [a, b, c, ..]) => class.call1((a, b, c)),
            (4, [a, b, c, d, ..]) => class.call1((a, b, c, d)),
            (6, [a, b, c, d, e, f, ..]) => class.call1((a, b, c, d, e, f)),
            (11, [a, b, c, d, e, f, g, h, i, j, k, ..]) => {
                class.call1((a, b, c, d, e, f, g, h, i, j, k))
            }
            (n, objects) => class.call1(PyTuple::new(py, objects.into_iter().take(n))?),
        };
        made.map(Some)
    }
}

/// A JSON string's contents (between the quotes, escapes intact), unescaped. `None` for what
/// a record msgspec decoded cannot hold in a key: a lone surrogate, a malformed escape.
fn unescape(contents: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(contents.len());
    let mut rest = contents;
    while let Some(at) = rest.iter().position(|&c| c == b'\\') {
        out.push_str(std::str::from_utf8(&rest[..at]).ok()?);
        let (escape, after) = rest.get(at + 1..)?.split_first()?;
        rest = after;
        out.push(match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = hex4(rest)?;
                rest = &rest[4..];
                if (0xd800..0xdc00).contains(&high) {
                    // A surrogate pair: the low half must follow as its own escape.
                    let low = hex4(rest.strip_prefix(b"\\u")?)?;
                    if !(0xdc00..0xe000).contains(&low) {
                        return None;
                    }
                    rest = &rest[6..];
                    char::from_u32(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00))?
                } else {
                    char::from_u32(high)? // a lone low surrogate is not a char: None
                }
            }
            _ => return None,
        });
    }
    out.push_str(std::str::from_utf8(rest).ok()?);
    Some(out)
}

fn hex4(text: &[u8]) -> Option<u32> {
    let digits = std::str::from_utf8(text.get(..4)?).ok()?;
    u32::from_str_radix(digits, 16)
        .ok()
        .filter(|_| digits.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// `engine.core.codec._duplicate_key` in one pass: the first object key (unescaped, at any
/// depth) that occurs twice, in a record msgspec already decoded as a command. Every string
/// followed by a colon (whitespace between) is a key, as in the Python tokenizer.
/// `Err(())` where the record is not what such a record can be; the caller then asks Python.
fn first_duplicate_key(raw: &[u8]) -> Result<Option<String>, ()> {
    let mut seen: Vec<String> = Vec::new();
    let mut at = 0;
    while let Some(offset) = raw[at..].iter().position(|&c| c == b'"') {
        let start = at + offset + 1;
        // The closing quote: the first not escaped (a backslash takes the byte after it).
        let mut end = start;
        loop {
            match raw.get(end) {
                Some(b'"') => break,
                Some(b'\\') => end += 2,
                Some(_) => end += 1,
                None => return Err(()),
            }
        }
        at = end + 1;
        let mut next = at;
        while matches!(raw.get(next), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            next += 1;
        }
        if raw.get(next) != Some(&b':') {
            continue; // a value, not a key
        }
        let key = unescape(&raw[start..end]).ok_or(())?;
        if seen.contains(&key) {
            return Ok(Some(key));
        }
        seen.push(key);
    }
    Ok(None)
}

/// The module: `CommandDecoder`, `duplicate_key()`, and `fields()` to check the table against
/// the Structs.
#[pymodule]
mod _native_codec {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::CommandDecoder;

    /// The first repeated key of a record msgspec decoded as a command, or `None`; raises
    /// `ValueError` for a record no such decode can have passed (then Python's answer counts).
    #[pyfunction]
    fn duplicate_key(raw: &[u8]) -> PyResult<Option<String>> {
        super::first_duplicate_key(raw)
            .map_err(|()| pyo3::exceptions::PyValueError::new_err("not a decoded command record"))
    }

    /// Each covered command's tag and field names, in the order the decoder passes them.
    #[pyfunction]
    fn fields() -> Vec<(&'static str, Vec<&'static str>)> {
        super::COMMANDS
            .iter()
            .map(|(tag, fields)| (*tag, fields.iter().map(|field| field.name).collect()))
            .collect()
    }
}
