//! ARNs and the many spellings of a function name that the Lambda API accepts.

use crate::error::{LambdaError, Result};

/// Region and account every ARN of this installation is built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub region: String,
    pub account: String,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account: "000000000000".into(),
        }
    }
}

impl Scope {
    pub fn function_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.region, self.account
        )
    }
    pub fn qualified_function_arn(&self, name: &str, qualifier: &str) -> String {
        format!("{}:{qualifier}", self.function_arn(name))
    }
    pub fn capacity_provider_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{}:capacity-provider:{name}",
            self.region, self.account
        )
    }
    pub fn role_account_ok(&self, _role: &str) -> bool {
        true
    }
}

/// Longest function name (the name itself; an ARN around it may be longer, up to the
/// operation's `FunctionName` limit).
pub const MAX_FUNCTION_NAME_LEN: usize = 64;

/// A function reference as given in a path: a name, a partial ARN or a full ARN, with an
/// optional qualifier suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionRef {
    pub name: String,
    pub qualifier: Option<String>,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// True when `s` is a plain function or capacity provider name (`[a-zA-Z0-9-_]+`).
pub fn is_simple_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_name_char)
}

/// True when `s` is a valid qualifier: `$LATEST`, `$LATEST.PUBLISHED`, a version number or an alias.
pub fn is_qualifier(s: &str) -> bool {
    s == "$LATEST" || s == "$LATEST.PUBLISHED" || is_simple_name(s)
}

impl FunctionRef {
    /// Parses `name`, `name:qualifier`, `account:function:name[:qualifier]` or
    /// `arn:aws:lambda:region:account:function:name[:qualifier]`. `max_len` is the model's limit
    /// for this operation's FunctionName member (140 or 256).
    pub fn parse(input: &str, scope: &Scope, max_len: usize) -> Result<Self> {
        if input.is_empty() || input.len() > max_len {
            return Err(LambdaError::validation(
                input,
                "functionName",
                &format!("Member must have length between 1 and {max_len}"),
            ));
        }
        let bad = || {
            LambdaError::validation(
                input,
                "functionName",
                "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:)?(\\d{12}:)?(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST(\\.PUBLISHED)?|[a-zA-Z0-9-_]+))?",
            )
        };
        let parts: Vec<&str> = input.split(':').collect();
        let (region, account, rest): (Option<&str>, Option<&str>, &[&str]) = if parts[0] == "arn" {
            // arn:aws:lambda:region:account:function:name[:q]
            if parts.len() < 7
                || !parts[1].starts_with("aws")
                || parts[2] != "lambda"
                || parts[5] != "function"
            {
                return Err(bad());
            }
            (Some(parts[3]), Some(parts[4]), &parts[6..])
        } else if parts.len() >= 3 && parts[1] == "function" {
            (None, Some(parts[0]), &parts[2..])
        } else {
            (None, None, &parts[..])
        };
        let (name, qualifier) = match rest {
            [name] => (*name, None),
            [name, q] => (*name, Some((*q).to_string())),
            _ => return Err(bad()),
        };
        if !is_simple_name(name) {
            return Err(bad());
        }
        if name.len() > MAX_FUNCTION_NAME_LEN {
            return Err(LambdaError::validation(
                input,
                "functionName",
                &format!(
                    "Member must have length less than or equal to {MAX_FUNCTION_NAME_LEN} (the function name; only an ARN or partial ARN may be longer). Shorten the name '{name}' ({} characters) to {MAX_FUNCTION_NAME_LEN}.",
                    name.len()
                ),
            ));
        }
        if let Some(q) = &qualifier
            && !is_qualifier(q)
        {
            return Err(bad());
        }
        if let Some(acct) = account
            && (acct.len() != 12 || !acct.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(bad());
        }
        if let Some(r) = region
            && r != scope.region
        {
            return Err(LambdaError::not_found(format!(
                "Function not found: {input} (this fleetfn serves region {})",
                scope.region
            )));
        }
        if let Some(a) = account
            && a != scope.account
        {
            return Err(LambdaError::not_found(format!(
                "Function not found: {input} (this fleetfn serves account {})",
                scope.account
            )));
        }
        Ok(Self {
            name: name.to_string(),
            qualifier,
        })
    }

    /// Merges a path qualifier with a `Qualifier` query parameter; they must agree if both exist.
    pub fn with_query_qualifier(mut self, q: Option<&str>) -> Result<Self> {
        if let Some(q) = q {
            if q.is_empty() || q.len() > 128 || !is_qualifier(q) {
                return Err(LambdaError::validation(
                    q,
                    "qualifier",
                    "Member must satisfy regular expression pattern: \\$(LATEST(\\.PUBLISHED)?)|[a-zA-Z0-9-_$]+",
                ));
            }
            match &self.qualifier {
                Some(existing) if existing != q => {
                    return Err(LambdaError::invalid(format!(
                        "The derived qualifier from the function name ({existing}) does not match the specified qualifier ({q})."
                    )));
                }
                _ => self.qualifier = Some(q.to_string()),
            }
        }
        Ok(self)
    }
}

/// Parses a capacity provider name or ARN (`[a-zA-Z0-9-_]+`, at most 140 characters).
pub fn parse_capacity_provider_name(input: &str, scope: &Scope) -> Result<String> {
    let pattern_err = || {
        LambdaError::validation(
            input,
            "capacityProviderName",
            "Member must satisfy regular expression pattern: (arn:aws[a-zA-Z-]*:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:capacity-provider:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+",
        )
    };
    if input.is_empty() || input.len() > 140 {
        return Err(LambdaError::validation(
            input,
            "capacityProviderName",
            "Member must have length between 1 and 140",
        ));
    }
    if is_simple_name(input) {
        return Ok(input.to_string());
    }
    parse_capacity_provider_arn(input, scope).map_err(|e| {
        if e.kind == crate::ErrorKind::ResourceNotFound {
            e
        } else {
            pattern_err()
        }
    })
}

/// Parses a full capacity provider ARN into its name.
pub fn parse_capacity_provider_arn(input: &str, scope: &Scope) -> Result<String> {
    let parts: Vec<&str> = input.split(':').collect();
    if parts.len() != 7
        || parts[0] != "arn"
        || !parts[1].starts_with("aws")
        || parts[2] != "lambda"
        || parts[5] != "capacity-provider"
        || !is_simple_name(parts[6])
        || parts[4].len() != 12
        || !parts[4].chars().all(|c| c.is_ascii_digit())
    {
        return Err(LambdaError::validation(
            input,
            "capacityProviderArn",
            "Member must satisfy regular expression pattern: arn:aws[a-zA-Z-]*:lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:capacity-provider:[a-zA-Z0-9-_]+",
        ));
    }
    if parts[3] != scope.region || parts[4] != scope.account {
        return Err(LambdaError::not_found(format!(
            "Capacity provider not found: {input}"
        )));
    }
    Ok(parts[6].to_string())
}

/// A taggable resource named by ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaggableResource {
    Function(String),
    CapacityProvider(String),
}

/// Parses the `Resource` of TagResource/UntagResource/ListTags.
pub fn parse_taggable(input: &str, scope: &Scope) -> Result<TaggableResource> {
    let parts: Vec<&str> = input.split(':').collect();
    let bad = || {
        LambdaError::validation(
            input,
            "resource",
            "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:(function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?|capacity-provider:[a-zA-Z0-9-_]+)",
        )
    };
    if parts.len() < 7 || parts[0] != "arn" || parts[2] != "lambda" {
        return Err(bad());
    }
    match parts[5] {
        "function" => {
            let f = FunctionRef::parse(input, scope, 256)?;
            if f.qualifier.is_some() {
                return Err(LambdaError::invalid(
                    "Tags are not supported on function versions or aliases; tag the unqualified function ARN.",
                ));
            }
            Ok(TaggableResource::Function(f.name))
        }
        "capacity-provider" => Ok(TaggableResource::CapacityProvider(
            parse_capacity_provider_arn(input, scope)?,
        )),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_function_name_forms() {
        let s = Scope::default();
        let plain = FunctionRef::parse("my-fn", &s, 140).unwrap();
        assert_eq!(plain.name, "my-fn");
        assert_eq!(plain.qualifier, None);
        let q = FunctionRef::parse("my-fn:prod", &s, 140).unwrap();
        assert_eq!(q.qualifier.as_deref(), Some("prod"));
        let partial = FunctionRef::parse("000000000000:function:my-fn", &s, 140).unwrap();
        assert_eq!(partial.name, "my-fn");
        let full = FunctionRef::parse(
            "arn:aws:lambda:us-east-1:000000000000:function:my-fn:$LATEST.PUBLISHED",
            &s,
            256,
        )
        .unwrap();
        assert_eq!(full.name, "my-fn");
        assert_eq!(full.qualifier.as_deref(), Some("$LATEST.PUBLISHED"));
    }

    #[test]
    fn rejects_bad_names_and_foreign_accounts() {
        let s = Scope::default();
        assert_eq!(
            FunctionRef::parse("bad name", &s, 140).unwrap_err().kind,
            crate::ErrorKind::Validation
        );
        assert_eq!(
            FunctionRef::parse(&"a".repeat(141), &s, 140)
                .unwrap_err()
                .kind,
            crate::ErrorKind::Validation
        );
        assert_eq!(
            FunctionRef::parse("arn:aws:lambda:us-east-1:111111111111:function:f", &s, 256)
                .unwrap_err()
                .kind,
            crate::ErrorKind::ResourceNotFound
        );
        assert_eq!(
            FunctionRef::parse("f:a:b:c", &s, 140).unwrap_err().kind,
            crate::ErrorKind::Validation
        );
    }

    #[test]
    fn function_names_are_at_most_64_characters_in_every_form() {
        let s = Scope::default();
        let n64 = "a".repeat(64);
        let n65 = "a".repeat(65);
        assert!(FunctionRef::parse(&n64, &s, 140).is_ok());
        let e = FunctionRef::parse(&n65, &s, 140).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Validation);
        assert!(e.message.contains("less than or equal to 64"), "{e}");
        assert!(FunctionRef::parse(&format!("{n64}:prod"), &s, 140).is_ok());
        assert!(FunctionRef::parse(&format!("{n65}:prod"), &s, 140).is_err());
        // An ARN is longer than 64 characters; the name inside it still is not.
        let arn64 = s.qualified_function_arn(&n64, "$LATEST.PUBLISHED");
        assert!(arn64.len() > 64);
        assert_eq!(FunctionRef::parse(&arn64, &s, 256).unwrap().name, n64);
        assert!(FunctionRef::parse(&s.function_arn(&n65), &s, 256).is_err());
        assert!(FunctionRef::parse(&format!("000000000000:function:{n65}"), &s, 140).is_err());
    }

    #[test]
    fn qualifier_in_path_and_query_must_agree() {
        let s = Scope::default();
        let f = FunctionRef::parse("f:1", &s, 140).unwrap();
        assert!(f.clone().with_query_qualifier(Some("1")).is_ok());
        assert_eq!(
            f.with_query_qualifier(Some("2")).unwrap_err().kind,
            crate::ErrorKind::InvalidParameterValue
        );
    }

    #[test]
    fn capacity_provider_names_and_arns() {
        let s = Scope::default();
        assert_eq!(parse_capacity_provider_name("cp-1", &s).unwrap(), "cp-1");
        assert_eq!(
            parse_capacity_provider_name(&s.capacity_provider_arn("cp-1"), &s).unwrap(),
            "cp-1"
        );
        assert!(parse_capacity_provider_name("cp 1", &s).is_err());
        assert!(matches!(
            parse_taggable(&s.capacity_provider_arn("x"), &s).unwrap(),
            TaggableResource::CapacityProvider(n) if n == "x"
        ));
        assert!(matches!(
            parse_taggable(&s.function_arn("f"), &s).unwrap(),
            TaggableResource::Function(n) if n == "f"
        ));
    }
}
