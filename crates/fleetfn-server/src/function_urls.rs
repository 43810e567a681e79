//! Function URLs: Create/Get/Update/Delete/ListFunctionUrlConfig(s) for a function (unqualified)
//! or an alias, stored by `function/qualifier` with an index by URL id, and
//! [`ControlPlane::function_url_target`], what the URL endpoint serves a request with, cached
//! per generation of desired state.

use std::collections::HashMap;
use std::sync::Arc;

use fleetfn_model::arn::FunctionRef;
use fleetfn_model::url::{
    AuthType, Cors, FunctionUrlConfig, FunctionUrlConfigRequest, InvokeMode,
    ListFunctionUrlConfigsResponse, url_timestamp,
};
use fleetfn_model::{ErrorKind, LambdaError, Result};
use fleetfn_store::{Expect, Op, Table};
use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::records::{LATEST, alias_key};
use crate::service::ControlPlane;
use crate::validate;

/// What a function URL serves: the function, the qualifier it invokes, its config and whether
/// its resource policy makes it public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTarget {
    pub function_name: String,
    /// `None` = unqualified (`$LATEST.PUBLISHED` on invoke).
    pub qualifier: Option<String>,
    /// The API shape (AuthType, Cors, InvokeMode, FunctionUrl, FunctionArn).
    pub config: FunctionUrlConfig,
    /// The resource policy lets anyone invoke this URL: for AuthType NONE, statements allowing
    /// `lambda:InvokeFunctionUrl` (FunctionUrlAuthType NONE) and `lambda:InvokeFunction` to
    /// Principal `"*"`.
    pub public: bool,
}

/// A stored function URL config; `FunctionUrl` is made from `url_id` when read, so a changed
/// URL base applies to existing URLs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UrlRecord {
    pub url_id: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub auth_type: AuthType,
    #[serde(default)]
    pub cors: Option<Cors>,
    pub invoke_mode: InvokeMode,
    pub creation_time: String,
    pub last_modified_time: String,
}

/// The index entry of a URL id.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UrlIdRecord {
    function: String,
    qualifier: Option<String>,
}

/// Store key of a function's or alias's URL config.
fn url_key(function: &str, qualifier: Option<&str>) -> String {
    format!("{function}/{}", qualifier.unwrap_or(LATEST))
}

/// Length of a URL id, as on AWS.
pub const URL_ID_LEN: usize = 32;

/// A new random URL id: 32 characters of `[a-z0-9]`.
pub fn new_url_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..URL_ID_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether `s` has the shape of a URL id.
pub fn is_url_id(s: &str) -> bool {
    s.len() == URL_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The default base of function URLs: `http://lambda-url.<region>.localhost[:<port>]`, a URL
/// being `http://<url-id>.lambda-url.<region>.localhost[:<port>]/`.
pub fn default_url_base(region: &str, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("http://lambda-url.{region}.localhost:{p}"),
        None => format!("http://lambda-url.{region}.localhost"),
    }
}

/// The URL of `url_id` under `base` (`scheme://host[:port]`): the id as a subdomain of the
/// host, with a trailing `/`.
pub fn function_url(base: &str, url_id: &str) -> String {
    let base = base.trim_end_matches('/');
    match base.split_once("://") {
        Some((scheme, host)) => format!("{scheme}://{url_id}.{host}/"),
        None => format!("http://{url_id}.{base}/"),
    }
}

/// The qualifier of a URL: `None` for the function itself (no qualifier, or `$LATEST`, which
/// older revisions of the API took), else an alias name of 1–128 characters
/// (`(?!^[0-9]+$)([a-zA-Z0-9-_]+)`): function URLs take no version.
fn url_qualifier_of(fref: &FunctionRef) -> Result<Option<String>> {
    match fref.qualifier.as_deref() {
        None | Some(LATEST) => Ok(None),
        Some(q) => {
            check_url_qualifier(q)?;
            Ok(Some(q.to_owned()))
        }
    }
}

fn check_url_qualifier(q: &str) -> Result<()> {
    let ok = !q.is_empty()
        && q.len() <= 128
        && q.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !q.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LambdaError::validation(
            q,
            "qualifier",
            "Member must satisfy regular expression pattern: ((?!^\\d+$)^[0-9a-zA-Z-_]+$)",
        ))
    }
}

fn check_list(
    list: &Option<Vec<String>>,
    path: &str,
    max: usize,
    item_max: usize,
    item_min: usize,
) -> Result<()> {
    let Some(list) = list else { return Ok(()) };
    if list.len() > max {
        return Err(LambdaError::validation(
            &format!("[{}]", list.join(", ")),
            path,
            &format!("Member must have length less than or equal to {max}"),
        ));
    }
    for item in list {
        let n = item.chars().count();
        if n > item_max || n < item_min {
            return Err(LambdaError::validation(
                &format!("[{}]", list.join(", ")),
                path,
                &format!(
                    "Member must satisfy constraint: [Member must have length less than or equal to {item_max}, Member must have length greater than or equal to {item_min}]"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks `Cors` against the model's constraints.
pub(crate) fn check_cors(c: &Cors) -> Result<()> {
    check_list(&c.allow_headers, "cors.allowHeaders", 100, 1024, 0)?;
    check_list(&c.expose_headers, "cors.exposeHeaders", 100, 1024, 0)?;
    check_list(&c.allow_methods, "cors.allowMethods", 6, 6, 0)?;
    check_list(&c.allow_origins, "cors.allowOrigins", 100, 253, 1)?;
    if let Some(m) = c.max_age {
        validate::int_between(m, "cors.maxAge", 0, 86_400)?;
    }
    Ok(())
}

fn parse_auth_type(v: &str) -> Result<AuthType> {
    validate::one_of(v, "authType", &AuthType::NAMES)?;
    Ok(AuthType::parse(v).expect("checked against NAMES"))
}

fn parse_invoke_mode(v: &str) -> Result<InvokeMode> {
    validate::one_of(v, "invokeMode", &InvokeMode::NAMES)?;
    Ok(InvokeMode::parse(v).expect("checked against NAMES"))
}

/// URL targets by URL id, valid for one generation of desired state (and, with a
/// `resolve_ttl`, for at most that long), as [`crate::invoke`] caches resolutions.
///
/// Ids that name no URL are kept apart from the URLs found, in a small map of their own: anyone
/// can send requests for made-up ids, and those must not push out the entries of real URLs.
#[derive(Debug, Default)]
pub(crate) struct UrlCache {
    found: Mutex<HashMap<String, UrlEntry>>,
    missing: Mutex<HashMap<String, UrlEntry>>,
}

#[derive(Debug)]
struct UrlEntry {
    generation: u64,
    at: Option<Instant>,
    target: Option<Arc<UrlTarget>>,
}

/// Bound on cached URL targets (only existing URLs fill it); cleared when it grows past it.
const CACHE_MAX: usize = 10_000;
/// Bound on cached ids that name no URL; cleared on its own when it grows past it.
const MISSING_MAX: usize = 1_024;

impl ControlPlane {
    /// The URL of `url_id` as this control plane writes it.
    pub fn function_url(&self, url_id: &str) -> String {
        match &self.url_base {
            Some(base) => function_url(base, url_id),
            None => function_url(&default_url_base(&self.scope.region, None), url_id),
        }
    }

    fn url_config(&self, r: &UrlRecord) -> FunctionUrlConfig {
        FunctionUrlConfig {
            function_url: self.function_url(&r.url_id),
            function_arn: match &r.qualifier {
                Some(q) => self.scope.qualified_function_arn(&r.function, q),
                None => self.scope.function_arn(&r.function),
            },
            auth_type: r.auth_type,
            cors: r.cors.clone(),
            creation_time: r.creation_time.clone(),
            last_modified_time: r.last_modified_time.clone(),
            invoke_mode: r.invoke_mode,
        }
    }

    /// The qualifier of a URL config (`None`: unqualified), after checking that the function
    /// and the alias exist, and checks of the records read, so that a config is not created
    /// for a function or alias deleted meanwhile.
    async fn url_qualifier(&self, fref: &FunctionRef) -> Result<(Option<String>, Vec<Op>)> {
        let qualifier = url_qualifier_of(fref)?;
        let (f, frev) = self.function(&fref.name).await?;
        if f.deleting {
            return Err(self.function_not_found(&fref.name, None));
        }
        let mut guards = vec![Op::check(Table::Functions, &fref.name, frev)];
        if let Some(q) = &qualifier {
            let key = alias_key(&fref.name, q);
            let Some((_, arev)) = self
                .get_record::<serde::de::IgnoredAny>(Table::Aliases, &key)
                .await?
            else {
                return Err(self.function_not_found(&fref.name, Some(q)));
            };
            guards.push(Op::check(Table::Aliases, key, arev));
        }
        Ok((qualifier, guards))
    }

    fn no_url_config() -> LambdaError {
        LambdaError::not_found("The resource you requested does not exist.")
    }

    /// CreateFunctionUrlConfig.
    pub async fn create_function_url_config(
        &self,
        fref: &FunctionRef,
        req: FunctionUrlConfigRequest,
    ) -> Result<FunctionUrlConfig> {
        let auth_type = parse_auth_type(validate::required(&req.auth_type, "authType")?)?;
        let invoke_mode = req
            .invoke_mode
            .as_deref()
            .map(parse_invoke_mode)
            .transpose()?
            .unwrap_or_default();
        if let Some(c) = &req.cors {
            check_cors(c)?;
        }
        let qualifier = url_qualifier_of(fref)?;
        let key = url_key(&fref.name, qualifier.as_deref());
        let arn = match &qualifier {
            Some(q) => self.scope.qualified_function_arn(&fref.name, q),
            None => self.scope.function_arn(&fref.name),
        };
        let exists = || {
            LambdaError::conflict(format!(
                "Failed to create function url config for [functionArn = {arn}]. Error message:  FunctionUrlConfig exists for this Lambda function"
            ))
        };
        let now = url_timestamp(jiff::Timestamp::now());
        // A fresh id collides with another with probability 36^-32; the index's Absent check
        // makes it impossible, and a retry draws another. A retry also follows a change of the
        // function or alias since they were read.
        for _ in 0..crate::service::RACE_ATTEMPTS {
            let (_, guards) = self.url_qualifier(fref).await?;
            if self
                .get_record::<serde::de::IgnoredAny>(Table::FunctionUrls, &key)
                .await?
                .is_some()
            {
                return Err(exists());
            }
            let rec = UrlRecord {
                url_id: new_url_id(),
                function: fref.name.clone(),
                qualifier: qualifier.clone(),
                auth_type,
                cors: req.cors.clone(),
                invoke_mode,
                creation_time: now.clone(),
                last_modified_time: now.clone(),
            };
            let index = UrlIdRecord {
                function: fref.name.clone(),
                qualifier: qualifier.clone(),
            };
            let mut ops = vec![
                Op::put(Table::FunctionUrls, &key, &rec, Expect::Absent),
                Op::put(Table::FunctionUrlIds, &rec.url_id, &index, Expect::Absent),
            ];
            ops.extend(guards);
            if self.commit_unless_raced(ops).await?.is_some() {
                return Ok(self.url_config(&rec));
            }
        }
        Err(LambdaError::service(
            "Could not allocate a unique function URL id. Retry the request.",
        ))
    }

    /// GetFunctionUrlConfig.
    pub async fn get_function_url_config(&self, fref: &FunctionRef) -> Result<FunctionUrlConfig> {
        let (qualifier, _) = self.url_qualifier(fref).await?;
        let (rec, _) = self
            .get_record::<UrlRecord>(
                Table::FunctionUrls,
                &url_key(&fref.name, qualifier.as_deref()),
            )
            .await?
            .ok_or_else(Self::no_url_config)?;
        Ok(self.url_config(&rec))
    }

    /// UpdateFunctionUrlConfig: the given members change, the rest stay.
    pub async fn update_function_url_config(
        &self,
        fref: &FunctionRef,
        req: FunctionUrlConfigRequest,
    ) -> Result<FunctionUrlConfig> {
        let auth_type = req.auth_type.as_deref().map(parse_auth_type).transpose()?;
        let invoke_mode = req
            .invoke_mode
            .as_deref()
            .map(parse_invoke_mode)
            .transpose()?;
        if let Some(c) = &req.cors {
            check_cors(c)?;
        }
        let (qualifier, _) = self.url_qualifier(fref).await?;
        let key = url_key(&fref.name, qualifier.as_deref());
        for _ in 0..crate::service::RACE_ATTEMPTS {
            let (mut rec, rev) = self
                .get_record::<UrlRecord>(Table::FunctionUrls, &key)
                .await?
                .ok_or_else(Self::no_url_config)?;
            if let Some(a) = auth_type {
                rec.auth_type = a;
            }
            if let Some(m) = invoke_mode {
                rec.invoke_mode = m;
            }
            if let Some(c) = &req.cors {
                rec.cors = Some(c.clone());
            }
            rec.last_modified_time = url_timestamp(jiff::Timestamp::now());
            let op = Op::put(Table::FunctionUrls, &key, &rec, Expect::Revision(rev));
            if self.commit_unless_raced(vec![op]).await?.is_some() {
                return Ok(self.url_config(&rec));
            }
        }
        Err(LambdaError::conflict(
            "The function URL config is being changed concurrently. Retry the request.",
        ))
    }

    /// DeleteFunctionUrlConfig.
    pub async fn delete_function_url_config(&self, fref: &FunctionRef) -> Result<()> {
        let (qualifier, _) = self.url_qualifier(fref).await?;
        let ops = self
            .url_delete_ops(&fref.name, qualifier.as_deref())
            .await?;
        if ops.is_empty() {
            return Err(Self::no_url_config());
        }
        self.commit(ops).await.map_err(|e| {
            if e.kind == ErrorKind::ResourceConflict {
                LambdaError::conflict(
                    "The function URL config was changed concurrently. Retry the request.",
                )
            } else {
                e
            }
        })?;
        Ok(())
    }

    /// ListFunctionUrlConfigs: the URLs of a function and its aliases.
    pub async fn list_function_url_configs(
        &self,
        fref: &FunctionRef,
        marker: Option<&str>,
        max_items: Option<u32>,
    ) -> Result<ListFunctionUrlConfigsResponse> {
        if let Some(m) = max_items {
            validate::int_between(i64::from(m), "maxItems", 1, 50)?;
        }
        let (f, _) = self.function(&fref.name).await?;
        if f.deleting {
            return Err(self.function_not_found(&fref.name, None));
        }
        let page = self
            .page::<UrlRecord>(
                Table::FunctionUrls,
                &format!("{}/", fref.name),
                marker,
                max_items,
                50,
            )
            .await?;
        Ok(ListFunctionUrlConfigsResponse {
            function_url_configs: page
                .items
                .iter()
                .map(|(r, _, _)| self.url_config(r))
                .collect(),
            next_marker: page.next_marker,
        })
    }

    /// Ops deleting the URL config of a function (`None`) or alias and its id, if it has one.
    pub(crate) async fn url_delete_ops(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<Vec<Op>> {
        let key = url_key(function, qualifier);
        let Some((rec, rev)) = self
            .get_record::<UrlRecord>(Table::FunctionUrls, &key)
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut ops = vec![Op::delete(Table::FunctionUrls, key, rev)];
        if let Some((_, irev)) = self
            .get_record::<serde::de::IgnoredAny>(Table::FunctionUrlIds, &rec.url_id)
            .await?
        {
            ops.push(Op::delete(Table::FunctionUrlIds, rec.url_id, irev));
        }
        Ok(ops)
    }

    /// Ops deleting every URL config of `function` and its aliases (the function is being
    /// deleted).
    pub(crate) async fn url_delete_ops_all(&self, function: &str) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        for (rec, key, rev) in self
            .list_records::<UrlRecord>(Table::FunctionUrls, &format!("{function}/"), None, 100_000)
            .await?
        {
            ops.push(Op::delete(Table::FunctionUrls, key, rev));
            if let Some((_, irev)) = self
                .get_record::<serde::de::IgnoredAny>(Table::FunctionUrlIds, &rec.url_id)
                .await?
            {
                ops.push(Op::delete(Table::FunctionUrlIds, rec.url_id, irev));
            }
        }
        Ok(ops)
    }

    /// The URL with this id, cached per generation of desired state like `lookup` in
    /// invoke.rs. `None` when no URL has this id (or its function is being deleted).
    pub async fn function_url_target(&self, url_id: &str) -> Result<Option<UrlTarget>> {
        if !is_url_id(url_id) {
            return Ok(None);
        }
        // Read the generation before the store, so a result is never newer than its tag.
        let generation = *self.changed.borrow();
        let fresh = |e: &UrlEntry| {
            e.generation == generation
                && self
                    .resolve_ttl
                    .is_none_or(|ttl| e.at.is_some_and(|at| at.elapsed() < ttl))
        };
        let cache = &self.url_cache;
        let hit = cache
            .found
            .lock()
            .get(url_id)
            .filter(|e| fresh(e))
            .map(|e| e.target.clone());
        let hit =
            hit.or_else(|| (cache.missing.lock().get(url_id).is_some_and(fresh)).then_some(None));
        if let Some(t) = hit {
            return Ok(t.map(|t| (*t).clone()));
        }
        let at = self.resolve_ttl.map(|_| Instant::now());
        // Errors (the store's) are transient: never cached. An unknown id costs one read of
        // the id index.
        let target = self
            .function_url_target_uncached(url_id)
            .await?
            .map(Arc::new);
        let entry = UrlEntry {
            generation,
            at,
            target: target.clone(),
        };
        let (into, other, max) = match target {
            Some(_) => (&cache.found, &cache.missing, CACHE_MAX),
            None => (&cache.missing, &cache.found, MISSING_MAX),
        };
        other.lock().remove(url_id);
        {
            let mut map = into.lock();
            if map.len() >= max {
                map.clear();
            }
            map.insert(url_id.to_owned(), entry);
        }
        Ok(target.map(|t| (*t).clone()))
    }

    async fn function_url_target_uncached(&self, url_id: &str) -> Result<Option<UrlTarget>> {
        let Some((idx, _)) = self
            .get_record::<UrlIdRecord>(Table::FunctionUrlIds, url_id)
            .await?
        else {
            return Ok(None);
        };
        let Some((rec, _)) = self
            .get_record::<UrlRecord>(
                Table::FunctionUrls,
                &url_key(&idx.function, idx.qualifier.as_deref()),
            )
            .await?
        else {
            return Ok(None);
        };
        if rec.url_id != url_id {
            return Ok(None);
        }
        match self
            .get_record::<crate::records::FunctionRecord>(Table::Functions, &rec.function)
            .await?
        {
            Some((f, _)) if !f.deleting => {}
            _ => return Ok(None),
        }
        let config = self.url_config(&rec);
        let public = rec.auth_type == AuthType::None
            && self
                .policy_document(&rec.function, rec.qualifier.as_deref())
                .await?
                .is_some_and(|p| p.allows_public_url(&config.function_arn));
        Ok(Some(UrlTarget {
            function_name: rec.function,
            qualifier: rec.qualifier,
            config,
            public,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ids() {
        let a = new_url_id();
        assert!(is_url_id(&a), "{a}");
        assert_ne!(a, new_url_id());
        assert!(!is_url_id("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"));
        assert!(!is_url_id("abc"));
    }

    #[test]
    fn urls_under_a_base() {
        let id = "a".repeat(32);
        assert_eq!(
            function_url(&default_url_base("us-east-1", Some(9001)), &id),
            format!("http://{id}.lambda-url.us-east-1.localhost:9001/")
        );
        assert_eq!(
            function_url("https://urls.example.test/", &id),
            format!("https://{id}.urls.example.test/")
        );
        assert_eq!(
            function_url("fn.test:8080", &id),
            format!("http://{id}.fn.test:8080/")
        );
    }

    #[test]
    fn qualifiers() {
        assert!(check_url_qualifier("live").is_ok());
        assert!(check_url_qualifier("v1_2-x").is_ok());
        for bad in ["1", "$LATEST.PUBLISHED", ""] {
            let e = check_url_qualifier(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{bad}");
        }
    }

    #[test]
    fn cors_limits() {
        let ok = Cors {
            allow_credentials: Some(true),
            allow_headers: Some(vec!["x-custom".into()]),
            allow_methods: Some(vec!["GET".into(), "*".into()]),
            allow_origins: Some(vec!["https://example.com".into()]),
            expose_headers: Some(vec![]),
            max_age: Some(86_400),
        };
        assert!(check_cors(&ok).is_ok());
        let bad = |c: Cors| check_cors(&c).unwrap_err().message;
        let m = bad(Cors {
            max_age: Some(86_401),
            ..ok.clone()
        });
        assert!(
            m.contains("'cors.maxAge'") && m.contains("less than or equal to 86400"),
            "{m}"
        );
        assert!(
            bad(Cors {
                max_age: Some(-1),
                ..ok.clone()
            })
            .contains("greater than or equal to 0")
        );
        assert!(
            bad(Cors {
                allow_origins: Some(vec!["o".into(); 101]),
                ..ok.clone()
            })
            .contains("'cors.allowOrigins'")
        );
        assert!(
            bad(Cors {
                allow_origins: Some(vec![String::new()]),
                ..ok.clone()
            })
            .contains("greater than or equal to 1")
        );
        assert!(
            bad(Cors {
                allow_methods: Some(vec!["OPTIONSX".into()]),
                ..ok.clone()
            })
            .contains("'cors.allowMethods'")
        );
        assert!(
            bad(Cors {
                allow_methods: Some(vec!["GET".into(); 7]),
                ..ok.clone()
            })
            .contains("less than or equal to 6")
        );
        assert!(
            bad(Cors {
                allow_headers: Some(vec!["h".repeat(1025)]),
                ..ok
            })
            .contains("'cors.allowHeaders'")
        );
    }

    #[test]
    fn enums() {
        assert_eq!(parse_auth_type("NONE").unwrap(), AuthType::None);
        let e = parse_auth_type("none").unwrap_err();
        assert_eq!(
            e.message,
            "1 validation error detected: Value 'none' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [NONE, AWS_IAM]"
        );
        assert_eq!(
            parse_invoke_mode("RESPONSE_STREAM").unwrap(),
            InvokeMode::ResponseStream
        );
        assert!(parse_invoke_mode("STREAM").is_err());
    }

    mod service {
        use std::io::Write;

        use base64::Engine;
        use fleetfn_model::policy::AddPermissionRequest;
        use fleetfn_model::types::{CreateAliasRequest, CreateFunctionRequest, FunctionCode};

        use super::*;

        fn zip_b64() -> String {
            let mut buf = std::io::Cursor::new(Vec::new());
            {
                let mut w = zip::ZipWriter::new(&mut buf);
                let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
                w.start_file("bootstrap", opts).unwrap();
                w.write_all(b"#!/bin/sh").unwrap();
                w.finish().unwrap();
            }
            base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
        }

        fn fref(name: &str, q: Option<&str>) -> FunctionRef {
            FunctionRef {
                name: name.into(),
                qualifier: q.map(str::to_owned),
            }
        }

        fn url_req(auth: &str) -> FunctionUrlConfigRequest {
            FunctionUrlConfigRequest {
                auth_type: Some(auth.into()),
                ..Default::default()
            }
        }

        fn allow(sid: &str, action: &str, url_auth: Option<&str>) -> AddPermissionRequest {
            AddPermissionRequest {
                statement_id: Some(sid.into()),
                action: Some(action.into()),
                principal: Some("*".into()),
                function_url_auth_type: url_auth.map(str::to_owned),
                invoked_via_function_url: (action == "lambda:InvokeFunction").then_some(true),
                ..Default::default()
            }
        }

        async fn setup() -> (tempfile::TempDir, ControlPlane) {
            let (d, cp) = crate::tests::cp().await;
            let cp = cp.with_url_base(default_url_base("us-east-1", Some(9001)));
            cp.create_function(CreateFunctionRequest {
                function_name: Some("f".into()),
                runtime: Some("provided.al2023".into()),
                role: Some("arn:aws:iam::000000000000:role/fn".into()),
                code: Some(FunctionCode {
                    zip_file: Some(zip_b64()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
            cp.create_alias(
                &fref("f", None),
                CreateAliasRequest {
                    name: Some("live".into()),
                    function_version: Some("$LATEST".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            (d, cp)
        }

        fn id_of(c: &FunctionUrlConfig) -> String {
            c.function_url
                .strip_prefix("http://")
                .and_then(|r| r.split('.').next())
                .unwrap()
                .to_owned()
        }

        #[tokio::test]
        async fn urls_targets_and_public_policies() {
            let (_d, cp) = setup().await;
            let c = cp
                .create_function_url_config(&fref("f", None), url_req("NONE"))
                .await
                .unwrap();
            let id = id_of(&c);
            assert_eq!(
                c.function_url,
                format!("http://{id}.lambda-url.us-east-1.localhost:9001/")
            );
            assert_eq!(c.function_arn, cp.scope.function_arn("f"));
            assert_eq!(c.invoke_mode, InvokeMode::Buffered);
            let e = cp
                .create_function_url_config(&fref("f", None), url_req("NONE"))
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::ResourceConflict);
            assert!(
                e.message.contains("FunctionUrlConfig exists"),
                "{}",
                e.message
            );
            let e = cp
                .create_function_url_config(&fref("f", Some("1")), url_req("NONE"))
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation);
            // `$LATEST` is the function itself.
            let latest = cp
                .get_function_url_config(&fref("f", Some("$LATEST")))
                .await
                .unwrap();
            assert_eq!(latest, c);
            let e = cp
                .create_function_url_config(&fref("f", Some("nope")), url_req("NONE"))
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::ResourceNotFound);

            // Not public until both statements are there.
            let t = cp.function_url_target(&id).await.unwrap().unwrap();
            assert_eq!(
                (t.function_name.as_str(), t.qualifier, t.public),
                ("f", None, false)
            );
            cp.add_permission(
                &fref("f", None),
                allow("url", "lambda:InvokeFunctionUrl", Some("NONE")),
            )
            .await
            .unwrap();
            assert!(!cp.function_url_target(&id).await.unwrap().unwrap().public);
            cp.add_permission(
                &fref("f", None),
                allow("invoke", "lambda:InvokeFunction", None),
            )
            .await
            .unwrap();
            assert!(cp.function_url_target(&id).await.unwrap().unwrap().public);
            // AWS_IAM URLs are never public.
            let u = cp
                .update_function_url_config(
                    &fref("f", None),
                    FunctionUrlConfigRequest {
                        auth_type: Some("AWS_IAM".into()),
                        invoke_mode: Some("RESPONSE_STREAM".into()),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(u.function_url, c.function_url);
            assert_eq!(u.creation_time, c.creation_time);
            let t = cp.function_url_target(&id).await.unwrap().unwrap();
            assert_eq!(t.config.invoke_mode, InvokeMode::ResponseStream);
            assert!(!t.public);

            // An alias has a URL (and a policy) of its own; both go with the alias.
            let a = cp
                .create_function_url_config(&fref("f", Some("live")), url_req("NONE"))
                .await
                .unwrap();
            let aid = id_of(&a);
            assert_ne!(aid, id);
            assert_eq!(a.function_arn, cp.scope.qualified_function_arn("f", "live"));
            let t = cp.function_url_target(&aid).await.unwrap().unwrap();
            assert_eq!(t.qualifier.as_deref(), Some("live"));
            assert!(!t.public, "the function's policy does not cover the alias");
            cp.add_permission(&fref("f", Some("live")), allow("all", "lambda:*", None))
                .await
                .unwrap();
            assert!(cp.function_url_target(&aid).await.unwrap().unwrap().public);
            let listed = cp
                .list_function_url_configs(&fref("f", None), None, None)
                .await
                .unwrap();
            assert_eq!(listed.function_url_configs.len(), 2);
            cp.delete_alias(&fref("f", None), "live").await.unwrap();
            assert!(cp.function_url_target(&aid).await.unwrap().is_none());
            assert!(
                cp.policy_document("f", Some("live"))
                    .await
                    .unwrap()
                    .is_none()
            );

            cp.delete_function(&fref("f", None)).await.unwrap();
            assert!(cp.function_url_target(&id).await.unwrap().is_none());
            for table in [Table::FunctionUrls, Table::FunctionUrlIds, Table::Policies] {
                assert_eq!(cp.store.count(table, "").await.unwrap(), 0, "{table:?}");
            }
            assert!(cp.function_url_target("nonsense").await.unwrap().is_none());
        }

        /// Made-up ids (anyone can send them) never push a real URL's entry out of the cache:
        /// the URL is deleted behind the cache's back (no generation bump) and still served
        /// from it after 20,000 unknown ids.
        #[tokio::test]
        async fn unknown_ids_do_not_evict_known_urls() {
            let (_d, cp) = setup().await;
            let c = cp
                .create_function_url_config(&fref("f", None), url_req("NONE"))
                .await
                .unwrap();
            let id = id_of(&c);
            assert!(cp.function_url_target(&id).await.unwrap().is_some());
            let ops = cp.url_delete_ops("f", None).await.unwrap();
            cp.store.commit(ops).await.unwrap();
            for _ in 0..20_000 {
                let unknown = new_url_id();
                assert!(cp.function_url_target(&unknown).await.unwrap().is_none());
            }
            assert!(cp.url_cache.missing.lock().len() <= MISSING_MAX);
            assert_eq!(cp.url_cache.found.lock().len(), 1);
            let t = cp.function_url_target(&id).await.unwrap();
            assert_eq!(t.map(|t| t.function_name).as_deref(), Some("f"));
            // This server's own change (a new generation) is seen at once.
            cp.create_alias(
                &fref("f", None),
                CreateAliasRequest {
                    name: Some("other".into()),
                    function_version: Some("$LATEST".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            assert!(cp.function_url_target(&id).await.unwrap().is_none());
            assert!(cp.url_cache.found.lock().is_empty());
        }

        /// Another server's change (it does not bump this one's generation) is seen once the
        /// `resolve_ttl` has passed, and not before.
        #[tokio::test]
        async fn targets_follow_other_servers_within_the_resolve_ttl() {
            let (d, cp) = setup().await;
            let other = |ttl| {
                ControlPlane::new(
                    cp.store.clone(),
                    crate::ControlPlaneConfig {
                        scope: fleetfn_model::Scope::default(),
                        artifacts_dir: d.path().join("artifacts"),
                        env_key: crate::EnvKey::from_bytes(&[7; crate::secrets::KEY_LEN]).unwrap(),
                    },
                )
                .unwrap()
                .with_resolve_ttl(ttl)
            };
            let (fresh, cached) = (
                other(std::time::Duration::ZERO),
                other(std::time::Duration::from_secs(3600)),
            );
            let c = cp
                .create_function_url_config(&fref("f", None), url_req("NONE"))
                .await
                .unwrap();
            let id = id_of(&c);
            for b in [&fresh, &cached] {
                assert!(!b.function_url_target(&id).await.unwrap().unwrap().public);
            }
            cp.add_permission(&fref("f", None), allow("all", "lambda:*", None))
                .await
                .unwrap();
            assert!(
                fresh
                    .function_url_target(&id)
                    .await
                    .unwrap()
                    .unwrap()
                    .public
            );
            assert!(
                !cached
                    .function_url_target(&id)
                    .await
                    .unwrap()
                    .unwrap()
                    .public
            );
            // This server's own changes apply at once, whatever the TTL.
            cached
                .delete_function_url_config(&fref("f", None))
                .await
                .unwrap();
            assert!(cached.function_url_target(&id).await.unwrap().is_none());
            assert!(fresh.function_url_target(&id).await.unwrap().is_none());
        }

        #[tokio::test]
        async fn policies() {
            let (_d, cp) = setup().await;
            let f = fref("f", None);
            let e = cp.get_policy(&f).await.unwrap_err();
            assert_eq!(
                e.message,
                "No policy is associated with the given resource."
            );
            let e = cp
                .add_permission(&fref("f", Some("$LATEST")), allow("a", "lambda:*", None))
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidParameterValue);
            let added = cp
                .add_permission(&f, allow("a", "lambda:InvokeFunctionUrl", Some("NONE")))
                .await
                .unwrap();
            assert!(
                added.statement.starts_with(r#"{"Sid":"a","#),
                "{}",
                added.statement
            );
            let e = cp
                .add_permission(&f, allow("a", "lambda:*", None))
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::ResourceConflict);
            let p = cp.get_policy(&f).await.unwrap();
            let doc: fleetfn_model::policy::PolicyDocument =
                serde_json::from_str(&p.policy).unwrap();
            assert_eq!(
                (doc.version.as_str(), doc.id.as_str()),
                ("2012-10-17", "default")
            );
            let mut stale = allow("b", "lambda:*", None);
            stale.revision_id = Some("stale".into());
            let e = cp.add_permission(&f, stale).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::PreconditionFailed);
            let mut fresh = allow("b", "lambda:*", None);
            fresh.revision_id = Some(p.revision_id.clone());
            cp.add_permission(&f, fresh).await.unwrap();
            let e = cp
                .remove_permission(&f, "b", Some(&p.revision_id))
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::PreconditionFailed);
            cp.remove_permission(&f, "b", None).await.unwrap();
            let e = cp.remove_permission(&f, "b", None).await.unwrap_err();
            assert_eq!(e.message, "Statement b is not found in resource policy.");
            cp.remove_permission(&f, "a", None).await.unwrap();
            assert_eq!(
                cp.get_policy(&f).await.unwrap_err().kind,
                ErrorKind::ResourceNotFound
            );
            let e = cp
                .add_permission(&fref("f", Some("7")), allow("a", "lambda:*", None))
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::ResourceNotFound);
        }
    }
}
