//! Parameters: types, overrides, defaults and constraints, checked the way CloudFormation does.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{ParamValue, ParameterDecl, Template, TemplateError};

/// Most parameters in one template (CloudFormation's limit).
const MAX_PARAMETERS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Number,
    NumberList,
    List,
}

/// The value kind of a declared type, and whether it is an SSM parameter type.
fn kind(name: &str, type_: &str) -> Result<(Kind, bool), TemplateError> {
    let list_inner = |t: &str| {
        t.strip_prefix("List<")
            .and_then(|r| r.strip_suffix('>'))
            .map(str::to_owned)
    };
    if let Some(inner) = type_
        .strip_prefix("AWS::SSM::Parameter::Value<")
        .and_then(|r| r.strip_suffix('>'))
    {
        let list = inner == "CommaDelimitedList" || list_inner(inner).is_some();
        return Ok((if list { Kind::List } else { Kind::String }, true));
    }
    let k = match type_ {
        "String" => Kind::String,
        "Number" => Kind::Number,
        "List<Number>" => Kind::NumberList,
        "CommaDelimitedList" => Kind::List,
        t if list_inner(t).is_some_and(|i| i.starts_with("AWS::")) => Kind::List,
        t if t.starts_with("AWS::") => Kind::String,
        _ => {
            return Err(TemplateError::format(
                format!("Parameters.{name}.Type"),
                format!(
                    "Unrecognized parameter type: {type_} (use String, Number, List<Number>, \
                     CommaDelimitedList, an AWS-specific type or AWS::SSM::Parameter::Value<...>)"
                ),
            ));
        }
    };
    Ok((k, false))
}

/// A scalar (or list of scalars) as CloudFormation's string form.
pub(crate) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => items
            .iter()
            .map(scalar_string)
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn flag(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// Checks `overrides` against the declarations and returns every parameter's value.
pub(crate) fn resolve(
    t: &Template,
    overrides: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, ParamValue>, TemplateError> {
    if t.parameters.len() > MAX_PARAMETERS {
        return Err(TemplateError::Limit {
            message: format!(
                "the template declares {} parameters; at most {MAX_PARAMETERS} are allowed",
                t.parameters.len()
            ),
        });
    }
    let unknown: Vec<String> = overrides
        .keys()
        .filter(|k| !t.parameters.contains_key(*k))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(TemplateError::UnknownParameters(unknown));
    }
    let missing: Vec<String> = t
        .parameters
        .iter()
        .filter(|(name, d)| !overrides.contains_key(*name) && d.default.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(TemplateError::MissingParameters(missing));
    }
    let mut out = BTreeMap::new();
    for (name, decl) in &t.parameters {
        let (kind, ssm) = kind(name, &decl.type_)?;
        let no_echo = flag(decl.no_echo.as_ref());
        let (text, from_default) = match overrides.get(name) {
            Some(v) => (v.clone(), false),
            None => {
                let d = decl.default.as_ref().unwrap_or(&Value::Null);
                let s = scalar_string(d).ok_or_else(|| {
                    TemplateError::format(
                        format!("Parameters.{name}.Default"),
                        "Default must be a string, a number or a list of strings",
                    )
                })?;
                (s, true)
            }
        };
        let pattern = match &decl.allowed_pattern {
            None => None,
            Some(p) => match regex_lite::RegexBuilder::new(&format!("^(?:{p})$"))
                .size_limit(1 << 20)
                .build()
            {
                Ok(re) => Some((p.as_str(), re)),
                Err(e) => {
                    // CloudFormation uses Java regular expressions; what regex-lite cannot
                    // compile (look-arounds, back references, ...) is not checked, and said so.
                    warnings.push(format!(
                        "Parameter {name}: AllowedPattern is not checked: fleetfn cannot compile it ({e})"
                    ));
                    None
                }
            },
        };
        let value = check(name, decl, kind, &text, pattern.as_ref())?;
        if ssm {
            let shown = if no_echo { "****" } else { text.as_str() };
            warnings.push(format!(
                "Parameter {name} ({}): fleetfn has no SSM Parameter Store; the value '{shown}' is used as it is",
                decl.type_
            ));
        }
        out.insert(
            name.clone(),
            ParamValue {
                type_: decl.type_.clone(),
                value,
                no_echo,
                from_default,
            },
        );
    }
    Ok(out)
}

fn check(
    name: &str,
    d: &ParameterDecl,
    kind: Kind,
    text: &str,
    pattern: Option<&(&str, regex_lite::Regex)>,
) -> Result<Value, TemplateError> {
    let fail = |message: String| {
        let message = match &d.constraint_description {
            Some(c) => format!("failed to satisfy constraint: {c}"),
            None => message,
        };
        TemplateError::InvalidParameter {
            name: name.to_owned(),
            message,
        }
    };
    let items: Vec<String> = match kind {
        Kind::String | Kind::Number => vec![text.to_owned()],
        Kind::List | Kind::NumberList => {
            if text.is_empty() {
                Vec::new()
            } else {
                text.split(',').map(|s| s.trim().to_owned()).collect()
            }
        }
    };
    let numeric = matches!(kind, Kind::Number | Kind::NumberList);
    for item in &items {
        let n = number(&Value::String(item.clone()));
        if numeric && n.is_none() {
            return Err(TemplateError::InvalidParameter {
                name: name.to_owned(),
                message: "must be a number".into(),
            });
        }
        if let Some(allowed) = &d.allowed_values {
            let ok = allowed.iter().any(|a| {
                scalar_string(a).as_deref() == Some(item.as_str())
                    || (numeric && number(a).is_some() && number(a) == n)
            });
            if !ok {
                return Err(fail("must be one of AllowedValues".into()));
            }
        }
        if let Some((pattern, re)) = pattern
            && !numeric
            && !re.is_match(item)
        {
            return Err(fail(format!("must match pattern {pattern}")));
        }
        let bound = |field: &str, v: &Option<Value>| -> Result<Option<f64>, TemplateError> {
            match v {
                None => Ok(None),
                Some(v) => number(v).map(Some).ok_or_else(|| {
                    TemplateError::format(
                        format!("Parameters.{name}.{field}"),
                        format!("{field} must be a number"),
                    )
                }),
            }
        };
        let len = item.chars().count() as f64;
        if let Some(min) = bound("MinLength", &d.min_length)?
            && kind == Kind::String
            && len < min
        {
            return Err(fail(format!("must contain at least {min} characters")));
        }
        if let Some(max) = bound("MaxLength", &d.max_length)?
            && kind == Kind::String
            && len > max
        {
            return Err(fail(format!("must contain at most {max} characters")));
        }
        if let (Some(min), Some(n)) = (bound("MinValue", &d.min_value)?, n)
            && numeric
            && n < min
        {
            return Err(fail(format!("must be a number not less than {min}")));
        }
        if let (Some(max), Some(n)) = (bound("MaxValue", &d.max_value)?, n)
            && numeric
            && n > max
        {
            return Err(fail(format!("must be a number not greater than {max}")));
        }
    }
    Ok(match kind {
        Kind::String | Kind::Number => Value::String(text.to_owned()),
        Kind::List | Kind::NumberList => {
            Value::Array(items.into_iter().map(Value::String).collect())
        }
    })
}
