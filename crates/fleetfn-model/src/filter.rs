//! Event source mapping filtering (`FilterCriteria.Filters[].Pattern`): the EventBridge-style
//! pattern language Lambda applies to each record before it invokes the function.
//!
//! A pattern is a JSON object shaped like the record. Its keys must all match (AND); a nested
//! object descends into the record; a leaf is a non-empty array of alternatives (OR), each an
//! exact value (string, number, boolean, `null`) or a one-key condition object: `prefix`,
//! `suffix` (either with a string or `{"equals-ignore-case": ..}`), `equals-ignore-case`,
//! `wildcard`, `anything-but`, `numeric` and `exists`.
//!
//! Conditions apply to the *leaf* values at their path, as EventBridge flattens events: an
//! array in the record contributes each of its elements (a condition matches when any element
//! does), and an object is not a leaf (`{"exists": true}` does not match a key whose value is an
//! object). A pattern object applied to an array of objects matches when any element matches;
//! applied to a scalar (say an SQS body that is not JSON) it never matches.
//! `anything-but` needs a value (a missing key never matches it; a `null` one does).
//!
//! Patterns are parsed once into a typed tree ([`Filters::parse`]) and bounded: at most
//! [`MAX_FILTERS`] filters, [`MAX_PATTERN_BYTES`] bytes each, objects nested at most
//! [`MAX_DEPTH`] levels.

use std::fmt;

use serde_json::{Map, Number, Value};

/// Filters per mapping (AWS's default quota).
pub const MAX_FILTERS: usize = 5;
/// Bytes per pattern (the API's length limit of `Filter.Pattern`).
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Nested objects per pattern, the pattern itself being the first.
pub const MAX_DEPTH: usize = 16;
/// Brackets a valid pattern can nest: [`MAX_DEPTH`] objects, then the match list, a condition
/// object, an `anything-but` object and its `equals-ignore-case` list. Checked on the raw text
/// before it is parsed.
const MAX_BRACKETS: usize = MAX_DEPTH + 4;

/// The parsed filters of one mapping: a record passes when any filter matches (no filters:
/// every record passes).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    patterns: Vec<Fields>,
}

/// Why a filter was rejected; each message names the filter and the place in its pattern
/// (`$` is the pattern, `$.body.size[0]` the first alternative of key `size` under `body`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    #[error("FilterCriteria has {count} filters; at most {max} are allowed")]
    TooManyFilters { count: usize, max: usize },
    #[error("Filters[{index}].Pattern is {len} bytes long; at most {max} are allowed")]
    PatternTooLong {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("Filters[{index}].Pattern is not valid JSON: {message}")]
    InvalidJson { index: usize, message: String },
    #[error("Filters[{index}].Pattern must be a JSON object, found {found}")]
    NotAnObject { index: usize, found: &'static str },
    #[error("Filters[{index}].Pattern nests deeper than {max} levels at {at}")]
    TooDeep {
        index: usize,
        /// The path of the first object too deep, or the byte offset where the raw text
        /// nests too deep to be parsed.
        at: String,
        max: usize,
    },
    #[error("Filters[{index}].Pattern is invalid at {path}: {reason}")]
    Invalid {
        index: usize,
        path: String,
        reason: Reason,
    },
}

/// What is wrong at one place of a pattern ([`FilterError::Invalid`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reason {
    #[error("empty objects are not allowed")]
    EmptyObject,
    #[error("a match list must be a JSON array, found {0}")]
    NotAList(&'static str),
    #[error("empty arrays are not allowed")]
    EmptyList,
    #[error("arrays are not allowed inside a match list")]
    NestedArray,
    #[error("a match condition must have exactly one key, found {0}")]
    ConditionKeys(usize),
    #[error("unrecognized match type \"{0}\"")]
    UnknownCondition(String),
    #[error("\"{condition}\" expects {expected}, found {found}")]
    BadArgument {
        condition: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("\"anything-but\" lists must hold only strings or only numbers")]
    MixedList,
    #[error("unrecognized numeric operator \"{0}\"")]
    UnknownNumericOperator(String),
    #[error("bad numeric range: {0}")]
    BadRange(&'static str),
    #[error("bad wildcard: {0}")]
    BadWildcard(&'static str),
}

impl Filters {
    /// Parses each pattern (a JSON object, ≤ 4096 bytes each, at most 5 filters as AWS's
    /// default quota).
    pub fn parse<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<Self, FilterError> {
        let patterns: Vec<&str> = patterns.into_iter().collect();
        if patterns.len() > MAX_FILTERS {
            return Err(FilterError::TooManyFilters {
                count: patterns.len(),
                max: MAX_FILTERS,
            });
        }
        let patterns = patterns
            .into_iter()
            .enumerate()
            .map(|(index, text)| parse_pattern(index, text))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether `record` (the record as Lambda would send it, e.g. the SQS record object with
    /// `body`, `attributes`, `messageAttributes`…; see [`sqs_filter_view`]) passes.
    pub fn matches(&self, record: &Value) -> bool {
        self.patterns.is_empty()
            || self
                .patterns
                .iter()
                .any(|fields| fields_match(fields, Some(record)))
    }

    /// The number of filters.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether there are no filters (every record passes).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// For SQS: the record with `body` replaced by the parsed JSON body when the body is a JSON
/// object (AWS filters on the parsed body when it is valid JSON; a pattern on body fields never
/// matches a non-JSON body; a plain-string body can only be matched by a pattern whose `body`
/// is itself a match list at top level).
pub fn sqs_filter_view(record: &Value) -> Value {
    let mut view = record.clone();
    if let Some(body) = view.get_mut("body")
        && let Some(text) = body.as_str()
        && let Ok(parsed @ Value::Object(_)) = serde_json::from_str::<Value>(text)
    {
        *body = parsed;
    }
    view
}

// ---------------------------------------------------------------------------------------------
// The parsed tree.

/// The keys of one pattern object, all of which must match.
type Fields = Vec<(String, Node)>;

#[derive(Debug, Clone)]
enum Node {
    /// A nested pattern object.
    Object(Fields),
    /// A match list: any alternative matches.
    Leaf(Vec<Matcher>),
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(Scalar),
    Prefix(Affix),
    Suffix(Affix),
    /// Lowercased.
    EqualsIgnoreCase(String),
    Wildcard(Wildcard),
    AnythingBut(Exclusion),
    Numeric(Range),
    Exists(bool),
}

/// An exact value of a pattern.
#[derive(Debug, Clone)]
enum Scalar {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
}

/// The argument of `prefix` or `suffix`.
#[derive(Debug, Clone)]
struct Affix {
    /// Lowercased when `ignore_case`.
    text: String,
    ignore_case: bool,
}

/// What `anything-but` excludes.
#[derive(Debug, Clone)]
enum Exclusion {
    /// Strings or numbers.
    Values(Vec<Scalar>),
    Prefix(String),
    Suffix(String),
    /// Lowercased.
    IgnoreCase(Vec<String>),
    Wildcard(Wildcard),
}

/// A numeric interval; `=` is the closed interval of one point.
#[derive(Debug, Clone, Copy, Default)]
struct Range {
    lower: Option<Bound>,
    upper: Option<Bound>,
}

#[derive(Debug, Clone, Copy)]
struct Bound {
    value: f64,
    inclusive: bool,
}

/// A `*` glob: the literal pieces between the stars (unescaped), never two stars in a row, so
/// every piece but the first and the last is non-empty.
#[derive(Debug, Clone)]
struct Wildcard {
    pieces: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Matching.

fn fields_match(fields: &Fields, value: Option<&Value>) -> bool {
    let object = value.and_then(Value::as_object);
    fields
        .iter()
        .all(|(key, node)| node_matches(node, object.and_then(|o| o.get(key))))
}

fn node_matches(node: &Node, value: Option<&Value>) -> bool {
    match node {
        Node::Leaf(matchers) => {
            let (one, mut many);
            let values: &[&Value] = match value {
                None => &[],
                Some(array @ Value::Array(_)) => {
                    many = Vec::new();
                    flatten(array, &mut many);
                    &many
                }
                Some(scalar_or_object) => {
                    one = [scalar_or_object];
                    &one
                }
            };
            matchers.iter().any(|m| m.matches(values))
        }
        Node::Object(fields) => match value {
            None | Some(Value::Object(_)) => fields_match(fields, value),
            Some(array @ Value::Array(_)) => {
                let mut elements = Vec::new();
                flatten(array, &mut elements);
                if elements.is_empty() {
                    // Nothing there, as if missing.
                    fields_match(fields, None)
                } else {
                    elements
                        .iter()
                        .any(|e| e.is_object() && fields_match(fields, Some(e)))
                }
            }
            // A pattern object never matches a scalar (an SQS body that is not JSON).
            Some(_) => false,
        },
    }
}

/// The values of `value` with arrays (at any depth) replaced by their elements, without
/// recursion. Objects are kept; callers take the leaves or the objects.
fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    let Value::Array(items) = value else {
        out.push(value);
        return;
    };
    let mut stack = vec![items.iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(Value::Array(inner)) => stack.push(inner.iter()),
            Some(item) => out.push(item),
            None => {
                stack.pop();
            }
        }
    }
}

impl Matcher {
    /// Whether the condition holds for the values at its path (`values` as [`flatten`]ed;
    /// objects among them are not leaves).
    fn matches(&self, values: &[&Value]) -> bool {
        let mut leaves = values.iter().copied().filter(|v| !v.is_object());
        match self {
            Self::Exists(expected) => leaves.next().is_some() == *expected,
            _ => leaves.any(|v| self.test(v)),
        }
    }

    fn test(&self, value: &Value) -> bool {
        match self {
            Self::Exact(scalar) => scalar.equals(value),
            Self::Prefix(affix) => value.as_str().is_some_and(|s| affix.prefix_of(s)),
            Self::Suffix(affix) => value.as_str().is_some_and(|s| affix.suffix_of(s)),
            Self::EqualsIgnoreCase(lower) => {
                value.as_str().is_some_and(|s| s.to_lowercase() == *lower)
            }
            Self::Wildcard(wildcard) => value.as_str().is_some_and(|s| wildcard.matches(s)),
            Self::AnythingBut(exclusion) => !exclusion.excludes(value),
            Self::Numeric(range) => value
                .as_number()
                .and_then(Number::as_f64)
                .is_some_and(|n| range.contains(n)),
            // A leaf is there.
            Self::Exists(expected) => *expected,
        }
    }
}

impl Scalar {
    fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Null, Value::Null) => true,
            (Self::Bool(a), Value::Bool(b)) => a == b,
            (Self::String(a), Value::String(b)) => a == b,
            (Self::Number(a), Value::Number(b)) => numbers_equal(a, b),
            _ => false,
        }
    }
}

/// Numbers compare by value (`5` equals `5.0`), integers exactly.
fn numbers_equal(a: &Number, b: &Number) -> bool {
    fn integer(n: &Number) -> Option<i128> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    }
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a.as_f64().zip(b.as_f64()).is_some_and(|(a, b)| a == b),
    }
}

impl Affix {
    fn prefix_of(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().starts_with(&self.text)
        } else {
            s.starts_with(&self.text)
        }
    }

    fn suffix_of(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().ends_with(&self.text)
        } else {
            s.ends_with(&self.text)
        }
    }
}

impl Exclusion {
    /// Whether a present value is excluded; values of another type than the excluded ones
    /// (including `null`) are not.
    fn excludes(&self, value: &Value) -> bool {
        match self {
            Self::Values(values) => values.iter().any(|v| v.equals(value)),
            Self::Prefix(p) => value.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Self::Suffix(p) => value.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            Self::IgnoreCase(lowers) => value.as_str().is_some_and(|s| {
                let s = s.to_lowercase();
                lowers.contains(&s)
            }),
            Self::Wildcard(w) => value.as_str().is_some_and(|s| w.matches(s)),
        }
    }
}

impl Range {
    fn contains(&self, n: f64) -> bool {
        let above = self.lower.is_none_or(|b| {
            if b.inclusive {
                n >= b.value
            } else {
                n > b.value
            }
        });
        let below = self.upper.is_none_or(|b| {
            if b.inclusive {
                n <= b.value
            } else {
                n < b.value
            }
        });
        above && below
    }
}

impl Wildcard {
    /// Linear in the length of `s`: the first piece is a prefix, the last a suffix of what
    /// the first leaves, and each middle piece is taken at its leftmost occurrence (greedy
    /// leftmost is exact for `*`-only globs).
    fn matches(&self, s: &str) -> bool {
        let [first, rest @ ..] = self.pieces.as_slice() else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return s == first;
        };
        let Some(rest) = s.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some(mut rest) = rest.strip_suffix(last.as_str()) else {
            return false;
        };
        for piece in middle {
            match rest.find(piece.as_str()) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        true
    }

    fn parse(text: &str) -> Result<Self, Reason> {
        let mut pieces = vec![String::new()];
        let mut chars = text.chars();
        let mut after_star = false;
        while let Some(c) = chars.next() {
            let literal = match c {
                '*' if after_star => {
                    return Err(Reason::BadWildcard(
                        "consecutive wildcard characters are not allowed",
                    ));
                }
                '*' => {
                    pieces.push(String::new());
                    after_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some(escaped @ ('*' | '\\')) => escaped,
                    _ => {
                        return Err(Reason::BadWildcard(
                            "a backslash may only escape '*' or '\\'",
                        ));
                    }
                },
                c => c,
            };
            after_star = false;
            if let Some(piece) = pieces.last_mut() {
                piece.push(literal);
            }
        }
        Ok(Self { pieces })
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing.

/// A place in a pattern, for messages: `$`, `$.body.size`, `$.body.size[0]`.
#[derive(Debug, Clone)]
struct Path(String);

impl Path {
    fn root() -> Self {
        Self("$".to_owned())
    }

    fn key(&self, key: &str) -> Self {
        Self(format!("{}.{key}", self.0))
    }

    fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An error at a place in the pattern, before the filter's index is known.
struct At(Path, Reason);

fn parse_pattern(index: usize, text: &str) -> Result<Fields, FilterError> {
    if text.len() > MAX_PATTERN_BYTES {
        return Err(FilterError::PatternTooLong {
            index,
            len: text.len(),
            max: MAX_PATTERN_BYTES,
        });
    }
    if let Some(offset) = too_deep_offset(text) {
        return Err(FilterError::TooDeep {
            index,
            at: format!("byte {offset}"),
            max: MAX_DEPTH,
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| FilterError::InvalidJson {
        index,
        message: e.to_string(),
    })?;
    let Value::Object(object) = value else {
        return Err(FilterError::NotAnObject {
            index,
            found: kind(&value),
        });
    };
    parse_object(&object, &Path::root(), 1).map_err(|err| match err {
        ObjectError::TooDeep(path) => FilterError::TooDeep {
            index,
            at: path.to_string(),
            max: MAX_DEPTH,
        },
        ObjectError::Invalid(At(path, reason)) => FilterError::Invalid {
            index,
            path: path.to_string(),
            reason,
        },
    })
}

/// The offset of the first bracket nesting deeper than any valid pattern can, found on the
/// raw text so that hostile nesting is refused before the JSON parser recurses into it.
fn too_deep_offset(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_BRACKETS {
                    return Some(offset);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

enum ObjectError {
    TooDeep(Path),
    Invalid(At),
}

impl From<At> for ObjectError {
    fn from(at: At) -> Self {
        Self::Invalid(at)
    }
}

fn parse_object(
    object: &Map<String, Value>,
    path: &Path,
    depth: usize,
) -> Result<Fields, ObjectError> {
    if depth > MAX_DEPTH {
        return Err(ObjectError::TooDeep(path.clone()));
    }
    if object.is_empty() {
        return Err(At(path.clone(), Reason::EmptyObject).into());
    }
    let mut fields = Vec::with_capacity(object.len());
    for (key, value) in object {
        let path = path.key(key);
        let node = match value {
            Value::Object(inner) => Node::Object(parse_object(inner, &path, depth + 1)?),
            Value::Array(items) => Node::Leaf(parse_list(items, &path)?),
            other => return Err(At(path, Reason::NotAList(kind(other))).into()),
        };
        fields.push((key.clone(), node));
    }
    Ok(fields)
}

fn parse_list(items: &[Value], path: &Path) -> Result<Vec<Matcher>, At> {
    if items.is_empty() {
        return Err(At(path.clone(), Reason::EmptyList));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = path.index(i);
            Ok(Matcher::Exact(match item {
                Value::Array(_) => return Err(At(path, Reason::NestedArray)),
                Value::Object(condition) => return parse_condition(condition, &path),
                Value::Null => Scalar::Null,
                Value::Bool(b) => Scalar::Bool(*b),
                Value::Number(n) => Scalar::Number(n.clone()),
                Value::String(s) => Scalar::String(s.clone()),
            }))
        })
        .collect()
}

/// The one `(key, value)` of a condition object.
fn single<'v>(object: &'v Map<String, Value>, path: &Path) -> Result<(&'v str, &'v Value), At> {
    let mut entries = object.iter();
    match (entries.next(), entries.next()) {
        (Some((key, value)), None) => Ok((key.as_str(), value)),
        _ => Err(At(path.clone(), Reason::ConditionKeys(object.len()))),
    }
}

fn parse_condition(object: &Map<String, Value>, path: &Path) -> Result<Matcher, At> {
    let (name, arg) = single(object, path)?;
    let path = &path.key(name);
    Ok(match name {
        "prefix" => Matcher::Prefix(parse_affix("prefix", arg, path)?),
        "suffix" => Matcher::Suffix(parse_affix("suffix", arg, path)?),
        "equals-ignore-case" => {
            Matcher::EqualsIgnoreCase(string_arg("equals-ignore-case", arg, path)?.to_lowercase())
        }
        "wildcard" => Matcher::Wildcard(
            Wildcard::parse(string_arg("wildcard", arg, path)?)
                .map_err(|reason| At(path.clone(), reason))?,
        ),
        "anything-but" => Matcher::AnythingBut(parse_exclusion(arg, path)?),
        "numeric" => Matcher::Numeric(parse_range(arg, path)?),
        "exists" => match arg {
            Value::Bool(b) => Matcher::Exists(*b),
            other => return Err(bad_arg(path, "exists", "true or false", other)),
        },
        other => {
            return Err(At(path.clone(), Reason::UnknownCondition(other.to_owned())));
        }
    })
}

fn bad_arg(path: &Path, condition: &'static str, expected: &'static str, found: &Value) -> At {
    At(
        path.clone(),
        Reason::BadArgument {
            condition,
            expected,
            found: kind(found),
        },
    )
}

fn string_arg<'v>(condition: &'static str, arg: &'v Value, path: &Path) -> Result<&'v str, At> {
    arg.as_str()
        .ok_or_else(|| bad_arg(path, condition, "a string", arg))
}

/// `"text"` or `{"equals-ignore-case": "text"}`.
fn parse_affix(condition: &'static str, arg: &Value, path: &Path) -> Result<Affix, At> {
    const EXPECTED: &str = "a string or {\"equals-ignore-case\": string}";
    match arg {
        Value::String(text) => Ok(Affix {
            text: text.clone(),
            ignore_case: false,
        }),
        Value::Object(inner) => {
            let (name, value) = single(inner, path)?;
            let inner_path = path.key(name);
            if name != "equals-ignore-case" {
                return Err(At(inner_path, Reason::UnknownCondition(name.to_owned())));
            }
            Ok(Affix {
                text: string_arg("equals-ignore-case", value, &inner_path)?.to_lowercase(),
                ignore_case: true,
            })
        }
        other => Err(bad_arg(path, condition, EXPECTED, other)),
    }
}

fn parse_exclusion(arg: &Value, path: &Path) -> Result<Exclusion, At> {
    const EXPECTED: &str = "a string, a number, a list of them, or a prefix, suffix, \
                            equals-ignore-case or wildcard condition";
    match arg {
        Value::String(s) => Ok(Exclusion::Values(vec![Scalar::String(s.clone())])),
        Value::Number(n) => Ok(Exclusion::Values(vec![Scalar::Number(n.clone())])),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(At(path.clone(), Reason::EmptyList));
            }
            let mut values = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                values.push(match item {
                    Value::String(s) => Scalar::String(s.clone()),
                    Value::Number(n) => Scalar::Number(n.clone()),
                    other => {
                        return Err(bad_arg(
                            &path.index(i),
                            "anything-but",
                            "strings or numbers",
                            other,
                        ));
                    }
                });
            }
            if !items.iter().all(Value::is_string) && !items.iter().all(Value::is_number) {
                return Err(At(path.clone(), Reason::MixedList));
            }
            Ok(Exclusion::Values(values))
        }
        Value::Object(inner) => {
            let (name, value) = single(inner, path)?;
            let path = &path.key(name);
            match name {
                "prefix" => Ok(Exclusion::Prefix(
                    string_arg("prefix", value, path)?.to_owned(),
                )),
                "suffix" => Ok(Exclusion::Suffix(
                    string_arg("suffix", value, path)?.to_owned(),
                )),
                "equals-ignore-case" => match value {
                    Value::String(s) => Ok(Exclusion::IgnoreCase(vec![s.to_lowercase()])),
                    Value::Array(items) if items.is_empty() => {
                        Err(At(path.clone(), Reason::EmptyList))
                    }
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            string_arg("equals-ignore-case", item, &path.index(i))
                                .map(str::to_lowercase)
                        })
                        .collect::<Result<_, _>>()
                        .map(Exclusion::IgnoreCase),
                    other => Err(bad_arg(
                        path,
                        "equals-ignore-case",
                        "a string or a list of strings",
                        other,
                    )),
                },
                "wildcard" => Wildcard::parse(string_arg("wildcard", value, path)?)
                    .map(Exclusion::Wildcard)
                    .map_err(|reason| At(path.clone(), reason)),
                other => Err(At(path.clone(), Reason::UnknownCondition(other.to_owned()))),
            }
        }
        other => Err(bad_arg(path, "anything-but", EXPECTED, other)),
    }
}

/// `["=", n]`, or one or two of a lower (`>`, `>=`) and an upper (`<`, `<=`) bound, each
/// followed by its number, the lower below the upper.
fn parse_range(arg: &Value, path: &Path) -> Result<Range, At> {
    const EXPECTED: &str = "an array of operator and number pairs";
    let bad = |reason| At(path.clone(), Reason::BadRange(reason));
    let Value::Array(items) = arg else {
        return Err(bad_arg(path, "numeric", EXPECTED, arg));
    };
    if items.is_empty() {
        return Err(At(path.clone(), Reason::EmptyList));
    }
    if items.len() != 2 && items.len() != 4 {
        return Err(bad("expected one or two operator and number pairs"));
    }
    let mut range = Range::default();
    let mut equals = false;
    for (i, pair) in items.chunks_exact(2).enumerate() {
        let op = pair[0]
            .as_str()
            .ok_or_else(|| bad_arg(&path.index(2 * i), "numeric", "an operator", &pair[0]))?;
        let value = pair[1]
            .as_f64()
            .ok_or_else(|| bad_arg(&path.index(2 * i + 1), "numeric", "a number", &pair[1]))?;
        let (slot, inclusive) = match op {
            "=" => {
                if items.len() != 2 {
                    return Err(bad("\"=\" cannot be combined with another operator"));
                }
                equals = true;
                (&mut range.lower, true)
            }
            ">" => (&mut range.lower, false),
            ">=" => (&mut range.lower, true),
            "<" => (&mut range.upper, false),
            "<=" => (&mut range.upper, true),
            other => {
                return Err(At(
                    path.index(2 * i),
                    Reason::UnknownNumericOperator(other.to_owned()),
                ));
            }
        };
        if slot.is_some() {
            return Err(bad("at most one lower and one upper bound"));
        }
        *slot = Some(Bound { value, inclusive });
    }
    if equals {
        range.upper = range.lower;
    } else if let (Some(lower), Some(upper)) = (range.lower, range.upper)
        && lower.value >= upper.value
    {
        return Err(bad("the lower bound must be below the upper bound"));
    }
    Ok(range)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filters(pattern: &str) -> Filters {
        Filters::parse([pattern]).unwrap_or_else(|e| panic!("{pattern}: {e}"))
    }

    /// Runs `(pattern, record, expected)` rows.
    fn table(rows: &[(&str, Value, bool)]) {
        for (pattern, record, expected) in rows {
            assert_eq!(
                filters(pattern).matches(record),
                *expected,
                "pattern {pattern} on record {record}"
            );
        }
    }

    fn error(patterns: &[&str]) -> FilterError {
        match Filters::parse(patterns.iter().copied()) {
            Ok(f) => panic!("{patterns:?} parsed: {f:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn exact_values() {
        table(&[
            (r#"{"a": ["x"]}"#, json!({"a": "x"}), true),
            (r#"{"a": ["x"]}"#, json!({"a": "X"}), false),
            (r#"{"a": ["x"]}"#, json!({"a": "xy"}), false),
            (r#"{"a": ["x"]}"#, json!({}), false),
            (r#"{"a": [""]}"#, json!({"a": ""}), true),
            (r#"{"a": [""]}"#, json!({"a": null}), false),
            (r#"{"a": [5]}"#, json!({"a": 5}), true),
            (r#"{"a": [5]}"#, json!({"a": 5.0}), true),
            (r#"{"a": [5.0]}"#, json!({"a": 5}), true),
            (r#"{"a": [5]}"#, json!({"a": "5"}), false),
            (r#"{"a": ["5"]}"#, json!({"a": 5}), false),
            (r#"{"a": [-1]}"#, json!({"a": -1}), true),
            (
                r#"{"a": [9223372036854775807]}"#,
                json!({"a": 9_223_372_036_854_775_808_u64}),
                false,
            ),
            (
                r#"{"a": [18446744073709551615]}"#,
                json!({"a": u64::MAX}),
                true,
            ),
            (r#"{"a": [true]}"#, json!({"a": true}), true),
            (r#"{"a": [true]}"#, json!({"a": false}), false),
            (r#"{"a": [true]}"#, json!({"a": "true"}), false),
            (r#"{"a": [null]}"#, json!({"a": null}), true),
            (r#"{"a": [null]}"#, json!({}), false),
            (r#"{"a": [null]}"#, json!({"a": "null"}), false),
            (r#"{"a": ["x"]}"#, json!({"a": {"x": 1}}), false),
        ]);
    }

    #[test]
    fn string_conditions() {
        table(&[
            (
                r#"{"a": [{"prefix": "us-"}]}"#,
                json!({"a": "us-east-1"}),
                true,
            ),
            (
                r#"{"a": [{"prefix": "us-"}]}"#,
                json!({"a": "eu-west-1"}),
                false,
            ),
            (
                r#"{"a": [{"prefix": "us-"}]}"#,
                json!({"a": "US-east-1"}),
                false,
            ),
            (r#"{"a": [{"prefix": "1"}]}"#, json!({"a": 12}), false),
            (r#"{"a": [{"prefix": ""}]}"#, json!({"a": "anything"}), true),
            (
                r#"{"a": [{"prefix": {"equals-ignore-case": "US-"}}]}"#,
                json!({"a": "us-east-1"}),
                true,
            ),
            (
                r#"{"a": [{"suffix": ".png"}]}"#,
                json!({"a": "cat.png"}),
                true,
            ),
            (
                r#"{"a": [{"suffix": ".png"}]}"#,
                json!({"a": "cat.PNG"}),
                false,
            ),
            (r#"{"a": [{"suffix": ".png"}]}"#, json!({"a": "png"}), false),
            (
                r#"{"a": [{"suffix": {"equals-ignore-case": ".png"}}]}"#,
                json!({"a": "cat.PNG"}),
                true,
            ),
            (
                r#"{"a": [{"equals-ignore-case": "Alice"}]}"#,
                json!({"a": "aLiCe"}),
                true,
            ),
            (
                r#"{"a": [{"equals-ignore-case": "Alice"}]}"#,
                json!({"a": "alicia"}),
                false,
            ),
            (
                r#"{"a": [{"equals-ignore-case": "ÉTÉ"}]}"#,
                json!({"a": "été"}),
                true,
            ),
        ]);
    }

    #[test]
    fn wildcards() {
        table(&[
            (
                r#"{"a": [{"wildcard": "*.png"}]}"#,
                json!({"a": "x.png"}),
                true,
            ),
            (
                r#"{"a": [{"wildcard": "*.png"}]}"#,
                json!({"a": ".png"}),
                true,
            ),
            (
                r#"{"a": [{"wildcard": "*.png"}]}"#,
                json!({"a": "x.jpg"}),
                false,
            ),
            (r#"{"a": [{"wildcard": "*"}]}"#, json!({"a": ""}), true),
            (r#"{"a": [{"wildcard": "*"}]}"#, json!({"a": 1}), false),
            (
                r#"{"a": [{"wildcard": "a*b*c"}]}"#,
                json!({"a": "abc"}),
                true,
            ),
            (
                r#"{"a": [{"wildcard": "a*b*c"}]}"#,
                json!({"a": "aXbYbZc"}),
                true,
            ),
            (
                r#"{"a": [{"wildcard": "a*b*c"}]}"#,
                json!({"a": "acb"}),
                false,
            ),
            (r#"{"a": [{"wildcard": "a*a"}]}"#, json!({"a": "a"}), false),
            (r#"{"a": [{"wildcard": "a*a"}]}"#, json!({"a": "aa"}), true),
            (
                r#"{"a": [{"wildcard": "*/lib/*"}]}"#,
                json!({"a": "/usr/lib/x"}),
                true,
            ),
            (
                r#"{"a": [{"wildcard": "exact"}]}"#,
                json!({"a": "exact"}),
                true,
            ),
            (
                r#"{"a": [{"wildcard": "exact"}]}"#,
                json!({"a": "exactly"}),
                false,
            ),
            (
                r#"{"a": [{"wildcard": "a\\*b"}]}"#,
                json!({"a": "a*b"}),
                true,
            ),
            (
                r#"{"a": [{"wildcard": "a\\*b"}]}"#,
                json!({"a": "axb"}),
                false,
            ),
            (
                r#"{"a": [{"wildcard": "a\\\\*"}]}"#,
                json!({"a": "a\\xyz"}),
                true,
            ),
        ]);
    }

    #[test]
    fn anything_but() {
        table(&[
            (r#"{"a": [{"anything-but": "x"}]}"#, json!({"a": "y"}), true),
            (
                r#"{"a": [{"anything-but": "x"}]}"#,
                json!({"a": "x"}),
                false,
            ),
            (r#"{"a": [{"anything-but": "x"}]}"#, json!({}), false),
            (
                r#"{"a": [{"anything-but": "x"}]}"#,
                json!({"a": null}),
                true,
            ),
            (r#"{"a": [{"anything-but": "x"}]}"#, json!({"a": 1}), true),
            (
                r#"{"a": [{"anything-but": ["x", "y"]}]}"#,
                json!({"a": "y"}),
                false,
            ),
            (
                r#"{"a": [{"anything-but": ["x", "y"]}]}"#,
                json!({"a": "z"}),
                true,
            ),
            (
                r#"{"a": [{"anything-but": 123}]}"#,
                json!({"a": 123.0}),
                false,
            ),
            (
                r#"{"a": [{"anything-but": [1, 2]}]}"#,
                json!({"a": 3}),
                true,
            ),
            (
                r#"{"a": [{"anything-but": [1, 2]}]}"#,
                json!({"a": 2}),
                false,
            ),
            (
                r#"{"a": [{"anything-but": {"prefix": "us-"}}]}"#,
                json!({"a": "eu-west-1"}),
                true,
            ),
            (
                r#"{"a": [{"anything-but": {"prefix": "us-"}}]}"#,
                json!({"a": "us-east-1"}),
                false,
            ),
            (
                r#"{"a": [{"anything-but": {"suffix": ".png"}}]}"#,
                json!({"a": "x.png"}),
                false,
            ),
            (
                r#"{"a": [{"anything-but": {"suffix": ".png"}}]}"#,
                json!({"a": null}),
                true,
            ),
            (
                r#"{"a": [{"anything-but": {"equals-ignore-case": ["Init", "Done"]}}]}"#,
                json!({"a": "DONE"}),
                false,
            ),
            (
                r#"{"a": [{"anything-but": {"equals-ignore-case": "init"}}]}"#,
                json!({"a": "running"}),
                true,
            ),
            (
                r#"{"a": [{"anything-but": {"wildcard": "*/lib/*"}}]}"#,
                json!({"a": "/usr/lib/x"}),
                false,
            ),
            (
                r#"{"a": [{"anything-but": {"wildcard": "*/lib/*"}}]}"#,
                json!({"a": "/usr/bin/x"}),
                true,
            ),
            // An array passes when any element is not excluded.
            (
                r#"{"a": [{"anything-but": "x"}]}"#,
                json!({"a": ["x", "y"]}),
                true,
            ),
            (
                r#"{"a": [{"anything-but": "x"}]}"#,
                json!({"a": ["x"]}),
                false,
            ),
            (r#"{"a": [{"anything-but": "x"}]}"#, json!({"a": []}), false),
        ]);
    }

    #[test]
    fn numeric_ranges() {
        let between = r#"{"n": [{"numeric": [">", 0, "<=", 5]}]}"#;
        let reversed = r#"{"n": [{"numeric": ["<=", 5, ">", 0]}]}"#;
        let mut rows = Vec::new();
        for pattern in [between, reversed] {
            rows.extend([
                (pattern, json!({"n": 0}), false),
                (pattern, json!({"n": 0.000_001}), true),
                (pattern, json!({"n": 1}), true),
                (pattern, json!({"n": 5}), true),
                (pattern, json!({"n": 5.000_001}), false),
                (pattern, json!({"n": -1}), false),
                (pattern, json!({"n": "3"}), false),
                (pattern, json!({"n": null}), false),
                (pattern, json!({}), false),
            ]);
        }
        rows.extend([
            (
                r#"{"n": [{"numeric": ["=", 100]}]}"#,
                json!({"n": 100}),
                true,
            ),
            (
                r#"{"n": [{"numeric": ["=", 100]}]}"#,
                json!({"n": 100.0}),
                true,
            ),
            (
                r#"{"n": [{"numeric": ["=", 100]}]}"#,
                json!({"n": 100.5}),
                false,
            ),
            (
                r#"{"n": [{"numeric": [">=", 10]}]}"#,
                json!({"n": 10}),
                true,
            ),
            (
                r#"{"n": [{"numeric": [">", 10]}]}"#,
                json!({"n": 10}),
                false,
            ),
            (
                r#"{"n": [{"numeric": ["<", 10]}]}"#,
                json!({"n": 10}),
                false,
            ),
            (
                r#"{"n": [{"numeric": ["<", 10]}]}"#,
                json!({"n": -1e300}),
                true,
            ),
            (
                r#"{"n": [{"numeric": ["<=", -2.5]}]}"#,
                json!({"n": -2.5}),
                true,
            ),
            (
                r#"{"n": [{"numeric": [">", 9999]}]}"#,
                json!({"n": 10000}),
                true,
            ),
            (
                r#"{"n": [{"numeric": [">", 1e9]}]}"#,
                json!({"n": u64::MAX}),
                true,
            ),
            (
                r#"{"n": [{"numeric": [">=", 1, "<", 2]}]}"#,
                json!({"n": [0, 1.5, 3]}),
                true,
            ),
        ]);
        table(&rows);
    }

    #[test]
    fn exists() {
        let yes = r#"{"a": [{"exists": true}]}"#;
        let no = r#"{"a": [{"exists": false}]}"#;
        let nested_no = r#"{"a": {"b": [{"exists": false}]}}"#;
        table(&[
            (yes, json!({"a": "x"}), true),
            (yes, json!({"a": null}), true),
            (yes, json!({"a": [1]}), true),
            (yes, json!({}), false),
            (yes, json!({"a": []}), false),
            // Only leaves exist.
            (yes, json!({"a": {"b": 1}}), false),
            (no, json!({}), true),
            (no, json!({"b": 1}), true),
            (no, json!({"a": null}), false),
            (no, json!({"a": ""}), false),
            (no, json!({"a": []}), true),
            (nested_no, json!({}), true),
            // A pattern object needs an object (or nothing) there.
            (nested_no, json!({"a": "scalar"}), false),
            (nested_no, json!({"a": null}), false),
            (nested_no, json!({"a": [1, 2]}), false),
            (nested_no, json!({"a": []}), true),
            (nested_no, json!({"a": {"c": 1}}), true),
            (nested_no, json!({"a": {"b": 1}}), false),
            (nested_no, json!({"a": [{"b": 1}, {"c": 1}]}), true),
            (nested_no, json!({"a": [{"b": 1}]}), false),
            (
                r#"{"a": [{"exists": false}], "b": ["x"]}"#,
                json!({"b": "x"}),
                true,
            ),
        ]);
    }

    #[test]
    fn and_across_keys_or_within_a_list() {
        let pattern = r#"{"a": ["x", "y"], "b": {"c": [{"numeric": [">", 1]}], "d": [true]}}"#;
        table(&[
            (pattern, json!({"a": "x", "b": {"c": 2, "d": true}}), true),
            (pattern, json!({"a": "y", "b": {"c": 2, "d": true}}), true),
            (pattern, json!({"a": "z", "b": {"c": 2, "d": true}}), false),
            (pattern, json!({"a": "x", "b": {"c": 1, "d": true}}), false),
            (pattern, json!({"a": "x", "b": {"c": 2}}), false),
            (pattern, json!({"a": "x"}), false),
            (
                pattern,
                json!({"a": "x", "b": {"c": 2, "d": true, "e": 0}, "f": 1}),
                true,
            ),
            (
                r#"{"a": ["x", {"prefix": "pre"}, {"numeric": ["=", 3]}, null]}"#,
                json!({"a": "prefix"}),
                true,
            ),
            (
                r#"{"a": ["x", {"prefix": "pre"}, {"numeric": ["=", 3]}, null]}"#,
                json!({"a": 3}),
                true,
            ),
            (
                r#"{"a": ["x", {"prefix": "pre"}, {"numeric": ["=", 3]}, null]}"#,
                json!({"a": null}),
                true,
            ),
            (
                r#"{"a": ["x", {"prefix": "pre"}, {"numeric": ["=", 3]}, null]}"#,
                json!({"a": "other"}),
                false,
            ),
        ]);
    }

    #[test]
    fn arrays_in_records() {
        table(&[
            (r#"{"a": ["x"]}"#, json!({"a": ["w", "x"]}), true),
            (r#"{"a": ["x"]}"#, json!({"a": ["w", "y"]}), false),
            (r#"{"a": ["x"]}"#, json!({"a": []}), false),
            (r#"{"a": ["x"]}"#, json!({"a": [["w"], [["x"]]]}), true),
            (
                r#"{"a": [{"prefix": "x"}]}"#,
                json!({"a": [1, null, "xy"]}),
                true,
            ),
            (
                r#"{"a": {"b": ["x"]}}"#,
                json!({"a": [{"b": "y"}, {"b": "x"}]}),
                true,
            ),
            (
                r#"{"a": {"b": ["x"]}}"#,
                json!({"a": [{"b": "y"}, {"c": "x"}]}),
                false,
            ),
            (
                r#"{"a": {"b": ["x"], "c": [1]}}"#,
                json!({"a": [{"b": "x", "c": 2}, {"b": "y", "c": 1}]}),
                false,
            ),
            (
                r#"{"a": {"b": ["x"], "c": [1]}}"#,
                json!({"a": [{"b": "y"}, [{"b": "x", "c": 1}]]}),
                true,
            ),
            (
                r#"{"a": {"b": {"c": ["x"]}}}"#,
                json!({"a": {"b": [{"c": ["x"]}]}}),
                true,
            ),
        ]);
        // Deeply nested record arrays are walked without recursion.
        let mut deep = json!("x");
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        // Not json!: it would serialize (recursively) a copy.
        let record = Value::Object(Map::from_iter([("a".to_owned(), deep)]));
        assert!(filters(r#"{"a": ["x"]}"#).matches(&record));
        assert!(!filters(r#"{"a": {"b": [{"exists": false}]}}"#).matches(&record));
        // Dropping 100 000 nested arrays recurses in serde_json; leak the record instead.
        std::mem::forget(record);
    }

    #[test]
    fn filters_are_ored_and_none_pass_everything() {
        let none = Filters::parse([]).unwrap();
        assert!(none.is_empty());
        assert!(none.matches(&json!({"anything": 1})));
        assert!(none.matches(&json!("not even an object")));

        let two = Filters::parse([r#"{"a": ["x"]}"#, r#"{"b": [{"exists": true}]}"#]).unwrap();
        assert_eq!(two.len(), 2);
        assert!(two.matches(&json!({"a": "x"})));
        assert!(two.matches(&json!({"b": 0})));
        assert!(!two.matches(&json!({"a": "y"})));
        assert!(!two.matches(&json!("x")));
    }

    fn sqs(body: &str) -> Value {
        json!({
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SenderId": "AIDAIENQZJOLO23YVJ4VO"},
            "messageAttributes": {"kind": {"stringValue": "order", "dataType": "String"}},
            "eventSource": "aws:sqs",
            "awsRegion": "us-west-2"
        })
    }

    #[test]
    fn sqs_body_json_or_plain_string() {
        let json_body = sqs(r#"{"RecordNumber": 1234, "RequestCode": "AAAA", "tags": ["a", "b"]}"#);
        let plain = sqs("Result: ok");
        let array_body = sqs(r#"["RequestCode"]"#);
        let number_body = sqs("1234");

        let view = sqs_filter_view(&json_body);
        assert_eq!(view["body"]["RecordNumber"], 1234);
        assert_eq!(view["messageId"], json_body["messageId"]);
        assert_eq!(sqs_filter_view(&plain), plain);
        assert_eq!(sqs_filter_view(&array_body), array_body);
        assert_eq!(sqs_filter_view(&number_body), number_body);
        assert_eq!(
            sqs_filter_view(&json!({"no": "body"})),
            json!({"no": "body"})
        );

        let rows: &[(&str, &Value, bool)] = &[
            (r#"{"body": {"RequestCode": ["AAAA"]}}"#, &json_body, true),
            (r#"{"body": {"RequestCode": ["BBBB"]}}"#, &json_body, false),
            (
                r#"{"body": {"RecordNumber": [{"numeric": [">", 9999]}]}}"#,
                &json_body,
                false,
            ),
            (
                r#"{"body": {"RecordNumber": [{"numeric": [">", 999]}]}}"#,
                &json_body,
                true,
            ),
            (r#"{"body": {"tags": ["b"]}}"#, &json_body, true),
            // Body fields never match a plain-string body…
            (r#"{"body": {"RequestCode": ["AAAA"]}}"#, &plain, false),
            (
                r#"{"body": {"RequestCode": [{"exists": true}]}}"#,
                &plain,
                false,
            ),
            (
                r#"{"body": {"Missing": [{"exists": false}]}}"#,
                &plain,
                false,
            ),
            (
                r#"{"body": {"Missing": [{"exists": false}]}}"#,
                &json_body,
                true,
            ),
            // …which a top-level match list on `body` does.
            (r#"{"body": [{"prefix": "Result: "}]}"#, &plain, true),
            (r#"{"body": ["Result: ok"]}"#, &plain, true),
            (r#"{"body": [{"prefix": "Result: "}]}"#, &json_body, false),
            (r#"{"body": [{"prefix": "[\"Req"}]}"#, &array_body, true),
            (r#"{"body": ["1234"]}"#, &number_body, true),
            // Other record fields filter as sent.
            (
                r#"{"attributes": {"ApproximateReceiveCount": ["1"]}, "body": {"RequestCode": ["AAAA"]}}"#,
                &json_body,
                true,
            ),
            (
                r#"{"messageAttributes": {"kind": {"stringValue": ["order"]}}}"#,
                &plain,
                true,
            ),
            (r#"{"eventSource": ["aws:sqs"]}"#, &plain, true),
        ];
        for (pattern, record, expected) in rows {
            assert_eq!(
                filters(pattern).matches(&sqs_filter_view(record)),
                *expected,
                "pattern {pattern} on body {}",
                record["body"]
            );
        }
    }

    #[test]
    fn invalid_patterns_say_what_and_where() {
        let rows: &[(&str, &str)] = &[
            (
                r#"{}"#,
                "Filters[0].Pattern is invalid at $: empty objects are not allowed",
            ),
            (
                r#"{"a": {}}"#,
                "Filters[0].Pattern is invalid at $.a: empty objects are not allowed",
            ),
            (
                r#"{"a": "x"}"#,
                "Filters[0].Pattern is invalid at $.a: a match list must be a JSON array, found a string",
            ),
            (
                r#"{"a": 1}"#,
                "at $.a: a match list must be a JSON array, found a number",
            ),
            (
                r#"{"a": null}"#,
                "at $.a: a match list must be a JSON array, found null",
            ),
            (
                r#"{"b": {"a": []}}"#,
                "at $.b.a: empty arrays are not allowed",
            ),
            (
                r#"{"a": [["x"]]}"#,
                "at $.a[0]: arrays are not allowed inside a match list",
            ),
            (
                r#"{"a": ["x", {"contains": "y"}]}"#,
                "at $.a[1].contains: unrecognized match type \"contains\"",
            ),
            (
                r#"{"a": [{"prefix": "x", "suffix": "y"}]}"#,
                "at $.a[0]: a match condition must have exactly one key, found 2",
            ),
            (
                r#"{"a": [{}]}"#,
                "at $.a[0]: a match condition must have exactly one key, found 0",
            ),
            (
                r#"{"a": [{"prefix": 1}]}"#,
                "at $.a[0].prefix: \"prefix\" expects a string or {\"equals-ignore-case\": string}, found a number",
            ),
            (
                r#"{"a": [{"prefix": {"wildcard": "x"}}]}"#,
                "at $.a[0].prefix.wildcard: unrecognized match type \"wildcard\"",
            ),
            (
                r#"{"a": [{"suffix": {"equals-ignore-case": 1}}]}"#,
                "at $.a[0].suffix.equals-ignore-case: \"equals-ignore-case\" expects a string, found a number",
            ),
            (
                r#"{"a": [{"equals-ignore-case": ["x"]}]}"#,
                "at $.a[0].equals-ignore-case: \"equals-ignore-case\" expects a string, found an array",
            ),
            (
                r#"{"a": [{"exists": "true"}]}"#,
                "at $.a[0].exists: \"exists\" expects true or false, found a string",
            ),
            (
                r#"{"a": [{"anything-but": true}]}"#,
                "at $.a[0].anything-but: \"anything-but\" expects a string, a number",
            ),
            (
                r#"{"a": [{"anything-but": []}]}"#,
                "at $.a[0].anything-but: empty arrays are not allowed",
            ),
            (
                r#"{"a": [{"anything-but": ["x", 1]}]}"#,
                "at $.a[0].anything-but: \"anything-but\" lists must hold only strings or only numbers",
            ),
            (
                r#"{"a": [{"anything-but": ["x", null]}]}"#,
                "at $.a[0].anything-but[1]: \"anything-but\" expects strings or numbers, found null",
            ),
            (
                r#"{"a": [{"anything-but": {"numeric": [">", 1]}}]}"#,
                "at $.a[0].anything-but.numeric: unrecognized match type \"numeric\"",
            ),
            (
                r#"{"a": [{"anything-but": {"equals-ignore-case": []}}]}"#,
                "at $.a[0].anything-but.equals-ignore-case: empty arrays are not allowed",
            ),
            (
                r#"{"a": [{"anything-but": {"equals-ignore-case": ["x", 2]}}]}"#,
                "at $.a[0].anything-but.equals-ignore-case[1]: \"equals-ignore-case\" expects a string, found a number",
            ),
            (
                r#"{"a": [{"wildcard": "a**b"}]}"#,
                "at $.a[0].wildcard: bad wildcard: consecutive wildcard characters are not allowed",
            ),
            (
                r#"{"a": [{"wildcard": "a\\b"}]}"#,
                "at $.a[0].wildcard: bad wildcard: a backslash may only escape",
            ),
            (
                r#"{"a": [{"anything-but": {"wildcard": "x\\"}}]}"#,
                "at $.a[0].anything-but.wildcard: bad wildcard",
            ),
            (
                r#"{"a": [{"numeric": 5}]}"#,
                "at $.a[0].numeric: \"numeric\" expects an array of operator and number pairs, found a number",
            ),
            (
                r#"{"a": [{"numeric": []}]}"#,
                "at $.a[0].numeric: empty arrays are not allowed",
            ),
            (
                r#"{"a": [{"numeric": [">"]}]}"#,
                "at $.a[0].numeric: bad numeric range: expected one or two operator and number pairs",
            ),
            (
                r#"{"a": [{"numeric": [">", 1, "<", 5, "<", 6]}]}"#,
                "bad numeric range: expected one or two operator and number pairs",
            ),
            (
                r#"{"a": [{"numeric": ["!=", 1]}]}"#,
                "at $.a[0].numeric[0]: unrecognized numeric operator \"!=\"",
            ),
            (
                r#"{"a": [{"numeric": [">", "1"]}]}"#,
                "at $.a[0].numeric[1]: \"numeric\" expects a number, found a string",
            ),
            (
                r#"{"a": [{"numeric": [1, ">"]}]}"#,
                "at $.a[0].numeric[0]: \"numeric\" expects an operator, found a number",
            ),
            (
                r#"{"a": [{"numeric": [">", 5, "<", 1]}]}"#,
                "bad numeric range: the lower bound must be below the upper bound",
            ),
            (
                r#"{"a": [{"numeric": [">=", 5, "<=", 5]}]}"#,
                "bad numeric range: the lower bound must be below the upper bound",
            ),
            (
                r#"{"a": [{"numeric": [">", 1, ">=", 2]}]}"#,
                "bad numeric range: at most one lower and one upper bound",
            ),
            (
                r#"{"a": [{"numeric": ["<", 1, "<", 2]}]}"#,
                "bad numeric range: at most one lower and one upper bound",
            ),
            (
                r#"{"a": [{"numeric": ["=", 1, "<", 2]}]}"#,
                "bad numeric range: \"=\" cannot be combined with another operator",
            ),
            (
                r#"["a"]"#,
                "Filters[0].Pattern must be a JSON object, found an array",
            ),
            (
                r#""a""#,
                "Filters[0].Pattern must be a JSON object, found a string",
            ),
            (
                r#"null"#,
                "Filters[0].Pattern must be a JSON object, found null",
            ),
            (
                r#"{"a": ["x"]"#,
                "Filters[0].Pattern is not valid JSON: EOF while parsing",
            ),
            ("", "Filters[0].Pattern is not valid JSON"),
            ("{\"a\": [1e999]}", "Filters[0].Pattern is not valid JSON"),
        ];
        for (pattern, expected) in rows {
            let message = error(&[pattern]).to_string();
            assert!(
                message.contains(expected),
                "pattern {pattern}: got {message:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn the_failing_filter_is_named() {
        let err = error(&[r#"{"a": ["x"]}"#, r#"{"a": "x"}"#]);
        assert_eq!(
            err,
            FilterError::Invalid {
                index: 1,
                path: "$.a".to_owned(),
                reason: Reason::NotAList("a string"),
            }
        );
    }

    #[test]
    fn hostile_patterns_are_bounded() {
        // Too many filters.
        let six = [r#"{"a": ["x"]}"#; 6];
        assert_eq!(
            error(&six),
            FilterError::TooManyFilters { count: 6, max: 5 }
        );
        assert_eq!(
            error(&six).to_string(),
            "FilterCriteria has 6 filters; at most 5 are allowed"
        );
        assert_eq!(Filters::parse(six[..5].iter().copied()).unwrap().len(), 5);

        // Too long: 4096 bytes pass, 4097 do not.
        let fill = |n: usize| format!(r#"{{"a": ["{}"]}}"#, "x".repeat(n - 11));
        assert_eq!(fill(4096).len(), 4096);
        assert!(Filters::parse([fill(4096).as_str()]).is_ok());
        let long = fill(4097);
        assert_eq!(
            error(&[&long]).to_string(),
            "Filters[0].Pattern is 4097 bytes long; at most 4096 are allowed"
        );
        let huge = format!(r#"{{"a": [{}"x"]}}"#, r#""x", "#.repeat(1_000_000));
        assert!(matches!(
            error(&[&huge]),
            FilterError::PatternTooLong { len, .. } if len == huge.len()
        ));

        // Nested objects: 16 levels pass, 17 are refused with their path.
        let nest = |levels: usize| {
            let mut pattern = r#"["x"]"#.to_owned();
            for _ in 0..levels {
                pattern = format!(r#"{{"k": {pattern}}}"#);
            }
            pattern
        };
        let sixteen = filters(&nest(16));
        let mut record = json!("x");
        for _ in 0..16 {
            record = json!({ "k": record });
        }
        assert!(sixteen.matches(&record));
        let err = error(&[&nest(17)]);
        assert_eq!(
            err.to_string(),
            format!(
                "Filters[0].Pattern nests deeper than 16 levels at ${}",
                ".k".repeat(16)
            )
        );

        // Bracket bombs are refused before the JSON parser sees them.
        for bomb in [
            nest(500),
            format!("{}{}", "[".repeat(2000), "]".repeat(2000)),
            format!(r#"{{"a": {}"x"{}}}"#, "[".repeat(30), "]".repeat(30)),
            "{".repeat(4096),
        ] {
            let err = error(&[&bomb]);
            assert!(
                matches!(&err, FilterError::TooDeep { at, max: 16, .. } if at.starts_with("byte ")),
                "{err}"
            );
            assert!(
                err.to_string()
                    .starts_with("Filters[0].Pattern nests deeper than 16 levels at byte ")
            );
        }
        // Brackets inside strings do not count.
        let quoted = format!(r#"{{"a": ["{}"]}}"#, "[{".repeat(100));
        assert!(filters(&quoted).matches(&json!({ "a": "[{".repeat(100) })));
        let escaped = r#"{"a": ["\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]}"#;
        assert!(Filters::parse([escaped]).is_ok());

        // The deepest valid condition fits under the bracket bound.
        let mut deepest = r#"[{"anything-but": {"equals-ignore-case": ["x"]}}]"#.to_owned();
        for _ in 0..16 {
            deepest = format!(r#"{{"k": {deepest}}}"#);
        }
        let mut other = json!("y");
        for _ in 0..16 {
            other = json!({ "k": other });
        }
        assert!(filters(&deepest).matches(&other));
        assert!(!filters(&deepest).matches(&record));

        // Wildcards stay linear on long values.
        let star = filters(r#"{"a": [{"wildcard": "*a*a*a*a*a*a*a*a*b"}]}"#);
        let long_value = json!({ "a": "a".repeat(1 << 20) });
        assert!(!star.matches(&long_value));
    }
}
