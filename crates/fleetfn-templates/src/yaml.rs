//! YAML → CloudFormation's JSON form.
//!
//! Built on `saphyr-parser` (maintained, YAML 1.2, an event parser that reports tags, anchors,
//! aliases and scalar styles), so the resolution of plain scalars is ours and follows what
//! CloudFormation does with YAML 1.1 templates:
//! - quoted and block scalars are strings;
//! - `true/false/yes/no/on/off` (lower, Capitalized or UPPER case) are booleans, like
//!   CloudFormation (a tag `Value: yes` becomes `"true"` there); single letters `y`/`n` stay strings;
//! - `null`, `~` and empty values are null;
//! - a number is a JSON number only when its text is canonical (`10`, `-3`, `1.5`); other
//!   number-like text stays the string as written: `0123` (account ids keep their zeros), `1.10`
//!   (versions keep their trailing zero), `0x1F`, `1e3`, `.inf`;
//! - dates and timestamps (`2010-09-09`) stay strings, as CloudFormation sees them;
//! - mapping keys are always the text as written.
//!
//! The short intrinsic tags are rewritten to their long forms (`!Ref X` → `{"Ref": "X"}`,
//! `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Sub ...` → `{"Fn::Sub": ...}`, ...).
//! Aliases and merge keys are rejected (CloudFormation does not support them either), which also
//! rules out alias-expansion bombs; nesting is limited to [`crate::MAX_DEPTH`].

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Map, Number, Value};

use crate::{MAX_DEPTH, TemplateError};

/// Short intrinsic tags and their long forms.
const SHORT_TAGS: &[(&str, &str)] = &[
    ("Ref", "Ref"),
    ("Condition", "Condition"),
    ("GetAtt", "Fn::GetAtt"),
    ("Sub", "Fn::Sub"),
    ("Join", "Fn::Join"),
    ("Select", "Fn::Select"),
    ("Split", "Fn::Split"),
    ("If", "Fn::If"),
    ("Equals", "Fn::Equals"),
    ("And", "Fn::And"),
    ("Or", "Fn::Or"),
    ("Not", "Fn::Not"),
    ("FindInMap", "Fn::FindInMap"),
    ("Base64", "Fn::Base64"),
    ("GetAZs", "Fn::GetAZs"),
    ("ImportValue", "Fn::ImportValue"),
    ("Cidr", "Fn::Cidr"),
    ("Transform", "Fn::Transform"),
    ("Length", "Fn::Length"),
    ("ToJsonString", "Fn::ToJsonString"),
];

fn syntax(message: impl Into<String>) -> TemplateError {
    TemplateError::Syntax {
        format: "YAML",
        message: message.into(),
    }
}

fn at(span: &Span) -> String {
    format!(
        "(line {}, column {})",
        span.start.line(),
        span.start.col() + 1
    )
}

fn scan_error(e: &ScanError) -> TemplateError {
    syntax(format!(
        "(line {}, column {}) {}",
        e.marker().line(),
        e.marker().col() + 1,
        e.info()
    ))
}

/// Parses one YAML document into a JSON value with the short tags rewritten.
pub(crate) fn to_json(text: &str) -> Result<Value, TemplateError> {
    let mut b = Builder {
        events: Parser::new_from_str(text),
    };
    let mut root = None;
    loop {
        let (ev, span) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err(syntax(format!(
                        "{} a template is one YAML document; found a second one",
                        at(&span)
                    )));
                }
                let (ev, span) = b.next()?;
                root = Some(b.node(ev, span, 0)?);
            }
            Event::StreamEnd => break,
            _ => return Err(syntax(format!("{} unexpected content", at(&span)))),
        }
    }
    Ok(root.unwrap_or(Value::Null))
}

struct Builder<'a> {
    events: Parser<'a, saphyr_parser::StrInput<'a>>,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, Span), TemplateError> {
        match self.events.next() {
            Some(Ok(ev)) => Ok(ev),
            Some(Err(e)) => Err(scan_error(&e)),
            None => Err(syntax("unexpected end of the document")),
        }
    }

    fn node(&mut self, ev: Event<'a>, span: Span, depth: usize) -> Result<Value, TemplateError> {
        match ev {
            Event::Alias(_) => Err(syntax(format!(
                "{} YAML aliases (*name) are not supported in templates; repeat the value instead",
                at(&span)
            ))),
            Event::Scalar(text, style, _anchor, tag) => scalar(&text, style, tag.as_deref(), &span),
            Event::SequenceStart(_anchor, tag) => {
                let depth = enter(depth, &span)?;
                let mut items = Vec::new();
                loop {
                    let (ev, span) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, span, depth)?);
                }
                tagged(Value::Array(items), tag.as_deref(), &span, "a sequence")
            }
            Event::MappingStart(_anchor, tag) => {
                let depth = enter(depth, &span)?;
                let mut map = Map::new();
                loop {
                    let (ev, kspan) = self.next()?;
                    let key = match ev {
                        Event::MappingEnd => break,
                        Event::Scalar(text, _, _, None) => text.into_owned(),
                        Event::Alias(_) => {
                            return Err(syntax(format!(
                                "{} YAML aliases (*name) are not supported in templates",
                                at(&kspan)
                            )));
                        }
                        _ => {
                            return Err(syntax(format!(
                                "{} a mapping key must be a plain string",
                                at(&kspan)
                            )));
                        }
                    };
                    if key == "<<" {
                        return Err(syntax(format!(
                            "{} YAML merge keys (<<) are not supported in templates",
                            at(&kspan)
                        )));
                    }
                    let (ev, vspan) = self.next()?;
                    let value = self.node(ev, vspan, depth)?;
                    if map.contains_key(&key) {
                        return Err(syntax(format!(
                            "{} duplicate mapping key '{key}'",
                            at(&kspan)
                        )));
                    }
                    map.insert(key, value);
                }
                tagged(Value::Object(map), tag.as_deref(), &span, "a mapping")
            }
            _ => Err(syntax(format!("{} unexpected YAML event", at(&span)))),
        }
    }
}

fn enter(depth: usize, span: &Span) -> Result<usize, TemplateError> {
    if depth >= MAX_DEPTH {
        return Err(TemplateError::Limit {
            message: format!(
                "{} the template nests deeper than {MAX_DEPTH} levels",
                at(span)
            ),
        });
    }
    Ok(depth + 1)
}

fn intrinsic(name: &str) -> Option<&'static str> {
    SHORT_TAGS
        .iter()
        .find(|(short, _)| *short == name)
        .map(|(_, long)| *long)
}

/// Applies a tag on a sequence or mapping.
fn tagged(
    value: Value,
    tag: Option<&Tag>,
    span: &Span,
    what: &str,
) -> Result<Value, TemplateError> {
    let Some(tag) = tag else { return Ok(value) };
    if tag.is_yaml_core_schema() {
        return match (tag.suffix.as_str(), &value) {
            ("seq", Value::Array(_)) | ("map", Value::Object(_)) => Ok(value),
            _ => Err(syntax(format!(
                "{} the tag !!{} cannot be used on {what}",
                at(span),
                tag.suffix
            ))),
        };
    }
    // `!GetAtt [A, B]`, `!Sub [s, vars]`, ...: the sequence is already the long form's argument.
    Ok(wrap(short_tag(tag, span)?, value))
}

fn short_tag(tag: &Tag, span: &Span) -> Result<&'static str, TemplateError> {
    if tag.handle == "!"
        && let Some(long) = intrinsic(&tag.suffix)
    {
        return Ok(long);
    }
    Err(syntax(format!(
        "{} unknown tag {}{}; the short forms of intrinsic functions are !Ref, !GetAtt, !Sub, \
         !Join, !Select, !Split, !If, !Equals, !And, !Or, !Not, !Condition, !FindInMap, !Base64, \
         !GetAZs, !ImportValue, !Cidr",
        at(span),
        tag.handle,
        tag.suffix
    )))
}

fn wrap(long: &str, arg: Value) -> Value {
    let mut m = Map::new();
    m.insert(long.to_owned(), arg);
    Value::Object(m)
}

fn scalar(
    text: &str,
    style: ScalarStyle,
    tag: Option<&Tag>,
    span: &Span,
) -> Result<Value, TemplateError> {
    let Some(tag) = tag else {
        return Ok(if style == ScalarStyle::Plain {
            plain(text)
        } else {
            Value::String(text.to_string())
        });
    };
    if tag.is_yaml_core_schema() {
        return match tag.suffix.as_str() {
            "str" => Ok(Value::String(text.to_string())),
            "null" | "bool" | "int" | "float" => {
                let v = plain(text);
                let ok = match tag.suffix.as_str() {
                    "null" => v.is_null(),
                    "bool" => v.is_boolean(),
                    "int" => v.is_i64() || v.is_u64(),
                    _ => v.is_number(),
                };
                if ok {
                    Ok(v)
                } else {
                    Err(syntax(format!(
                        "{} '{text}' is not a valid !!{}",
                        at(span),
                        tag.suffix
                    )))
                }
            }
            other => Err(syntax(format!(
                "{} the tag !!{other} is not supported in templates",
                at(span)
            ))),
        };
    }
    let long = short_tag(tag, span)?;
    let arg = Value::String(text.to_string());
    if long == "Fn::GetAtt" {
        // `!GetAtt Resource.Attribute` (the attribute may itself contain dots).
        let Some((id, attr)) = text.split_once('.') else {
            return Err(syntax(format!(
                "{} !GetAtt needs Resource.Attribute, got '{text}'",
                at(span)
            )));
        };
        return Ok(wrap(
            long,
            Value::Array(vec![Value::String(id.into()), Value::String(attr.into())]),
        ));
    }
    Ok(wrap(long, arg))
}

/// Resolves an untagged plain scalar (see the module docs).
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    if let Some(n) = canonical_number(text) {
        return Value::Number(n);
    }
    Value::String(text.to_owned())
}

/// A number whose text is exactly how it would be written back, so nothing the author wrote is lost.
fn canonical_number(text: &str) -> Option<Number> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    if !digits.contains('.') {
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        if let Ok(i) = text.parse::<i64>() {
            return Some(Number::from(i));
        }
        return text.parse::<u64>().ok().map(Number::from);
    }
    let f: f64 = text.parse().ok()?;
    let n = Number::from_f64(f)?;
    (n.to_string() == text).then_some(n)
}
